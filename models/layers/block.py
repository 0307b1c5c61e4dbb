"""The pre-norm Transformer block: x + attn(norm(x)), then x + ffn(norm(x))."""
from __future__ import annotations

from typing import Callable

import gin
import torch
from torch import nn

from models.layers.attention.multihead import MultiHeadAttention
from models.layers.feedforward import FeedForward


@gin.configurable
class TransformerBlock(nn.Module):
    """One encoder layer; `norm_first=False` gives the original post-norm arrangement.

    `activation_name` and `attention` (a core factory) default to the gin-configured
    FeedForward and MultiHeadAttention; a model passes them where its architecture fixes them
    (CLIP's causal text tower with quick-GELU, for instance).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, dropout: float = 0.0,
                 norm_first: bool = True, activation_name: str | None = None,
                 attention: Callable[..., nn.Module] | None = None) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attention = MultiHeadAttention(d_model, num_heads, **({"attention": attention} if attention else {}))
        self.feedforward = FeedForward(d_model, d_ff, dropout=dropout,
                                       **({"activation_name": activation_name} if activation_name else {}))
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_first:
            x = x + self.dropout(self.attention(self.norm1(x), mask))
            return x + self.dropout(self.feedforward(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attention(x, mask)))
        return self.norm2(x + self.dropout(self.feedforward(x)))
