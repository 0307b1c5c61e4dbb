"""Multi-head attention: projections around an interchangeable attention core.

The core is a gin-selectable factory (`MultiHeadAttention.attention = @PerformerAttention`),
so every model that uses this layer can swap its attention with one gin line.
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
        self.query = nn.Linear(d_model, inner, bias=bias)
        self.key = nn.Linear(d_context, inner, bias=bias)
        self.value = nn.Linear(d_context, inner, bias=bias)
        self.out = nn.Linear(inner, d_model, bias=bias)
        self.core = attention(num_heads=num_heads, head_dim=self.head_dim)

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
        q = self.split_heads(self.query(x))
        k = self.split_heads(self.key(source))
        v = self.split_heads(self.value(source))
        if position_bias is None:
            y = self.core(q, k, v, key_mask)
        else:
            y = self.core(q, k, v, key_mask, position_bias=position_bias)
        batch, _, length, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim))
