"""Multi-head attention: projections around an interchangeable attention core.

The core is a gin-selectable factory (`MultiHeadAttention.attention = @PerformerAttention`),
so every model that uses this layer can swap its attention with one gin line. A core that never
reads queries or keys (shared-QK Reformer, Synthesizer without dot product) says so with
`uses_queries` / `uses_keys = False`; the layer then builds no such projection (unused
parameters would break DDP) and passes None in its place.
"""
from __future__ import annotations

import inspect
from typing import Callable

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers.attention.dense import DenseAttention


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
        d_context = d_context or d_model
        core = attention(num_heads=num_heads, head_dim=self.head_dim)
        self.uses_queries = getattr(core, "uses_queries", True)
        self.uses_keys = getattr(core, "uses_keys", True)
        require(self.uses_keys or d_context == d_model,
                f"{type(core).__name__} reads no keys (it attends with the queries or synthesised weights), "
                "so it cannot do cross-attention; leave d_context unset")
        self.query = nn.Linear(d_model, inner, bias=bias) if self.uses_queries else None
        self.key = nn.Linear(d_context, inner, bias=bias) if self.uses_keys else None
        self.value = nn.Linear(d_context, inner, bias=bias)
        self.out = nn.Linear(inner, d_model, bias=bias)
        self.core = core

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
        require(context is None or self.uses_keys,
                f"{type(self.core).__name__} reads no keys, so it cannot attend to a separate context")
        q = self.split_heads(self.query(x)) if self.query is not None else None
        k = self.split_heads(self.key(source)) if self.key is not None else None
        v = self.split_heads(self.value(source))
        if position_bias is None:
            y = self.core(q, k, v, key_mask)
        else:
            y = self.core(q, k, v, key_mask, position_bias=position_bias)
        batch, _, length, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim))
