"""Multi-head attention: projections around an interchangeable attention core.

The core is a gin-selectable factory (`MultiHeadAttention.attention = @PerformerAttention`),
so every model that uses this layer can swap its attention with one gin line. A core that never
reads queries or keys (shared-QK Reformer, Synthesizer without dot product) says so with
`uses_queries` / `uses_keys = False`; the layer then builds no such projection (unused
parameters would break DDP) and passes None in its place. A core that can attend from one
sequence to another of any length says so with `cross_attention = True` (dense, naive, linear,
Performer, Linformer); the block-, hash- and position-table cores work within one sequence, and
a layer built for cross-attention (`d_context` given) refuses them at construction.
"""
from __future__ import annotations

import inspect
from typing import Callable

import gin
import torch
from torch import nn

from engine.config import translate_call_error
from engine.errors import ConfigError, require
from models.layers.attention.dense import DenseAttention


def can_cross_attend(core: nn.Module) -> bool:
    """Whether `core` attends from queries to the keys of another sequence, of another length."""
    return getattr(core, "uses_keys", True) and getattr(core, "cross_attention", False)


@gin.configurable
class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with `num_heads` heads of width `d_model // num_heads`."""

    def __init__(self, d_model: int, num_heads: int, *, attention: Callable[..., nn.Module] = DenseAttention,
                 bias: bool = True, d_context: int | None = None, head_dim: int | None = None) -> None:
        super().__init__()
        require(num_heads > 0, f"num_heads must be positive, got {num_heads}")
        require(head_dim is not None or d_model % num_heads == 0,
                f"num_heads = {num_heads} does not divide d_model = {d_model}")
        self.num_heads = num_heads
        self.head_dim = head_dim or d_model // num_heads
        inner = self.num_heads * self.head_dim
        try:
            core = attention(num_heads=num_heads, head_dim=self.head_dim)
        except TypeError as error:
            # A core that needs a setting only gin gives it (LinformerAttention.max_len): name the
            # binding; gin adds the model being built as the error leaves it.
            translated = translate_call_error(error)
            if translated is None:
                raise
            raise translated from None
        self.uses_queries = getattr(core, "uses_queries", True)
        self.uses_keys = getattr(core, "uses_keys", True)
        if d_context is not None and not can_cross_attend(core):
            raise ConfigError(cross_attention_error(core))
        d_context = d_context or d_model
        self.query = self.projection(d_model, inner, bias) if self.uses_queries else None
        self.key = self.projection(d_context, inner, bias) if self.uses_keys else None
        self.value = self.projection(d_context, inner, bias)
        self.out = self.projection(inner, d_model, bias)
        self.core = core

    def projection(self, d_in: int, d_out: int, bias: bool) -> nn.Module:
        """One of the four projections; a subclass may generate them instead (Hyper-UT's
        HyperAttention), keeping this layer's core, bindings and checks."""
        return nn.Linear(d_in, d_out, bias=bias)

    @property
    def takes_position_bias(self) -> bool:
        """Whether the core accepts an additive `position_bias` (dense attention does)."""
        return "position_bias" in inspect.signature(self.core.forward).parameters

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None,
                context: torch.Tensor | None = None, position_bias: torch.Tensor | None = None) -> torch.Tensor:
        """`key_mask` masks the keys: those of `context` for cross-attention, else of `x`.
        `position_bias` is handed to the core only when given, so cores without it still work."""
        source = x if context is None else context
        if context is not None and not can_cross_attend(self.core):
            raise ConfigError(cross_attention_error(self.core))
        q = self.split_heads(self.query(x)) if self.query is not None else None
        k = self.split_heads(self.key(source)) if self.key is not None else None
        v = self.split_heads(self.value(source))
        if position_bias is None:
            y = self.core(q, k, v, key_mask)
        else:
            y = self.core(q, k, v, key_mask, position_bias=position_bias)
        del q, k, v  # what backward needs the core has saved; the rest may go before the output projection
        batch, _, length, _ = y.shape
        merged = y.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim)
        del y  # a copy (heads interleaved) unless it was already laid out so: then it is the same storage
        return self.out(merged)


def cross_attention_error(core: nn.Module) -> str:
    why = ("reads no keys" if not getattr(core, "uses_keys", True)
           else "attends within one sequence (its blocks, hashes or tables index shared positions)")
    return (f"{type(core).__name__} {why}, so it cannot do the cross-attention this model needs; "
            "choose a core with cross_attention = True (DenseAttention, NaiveSoftmaxAttention, LinearAttention, "
            "PerformerAttention, LinformerAttention)")
