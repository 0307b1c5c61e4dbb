"""The pre-norm Transformer block: x + attn(norm(x)), then x + ffn(norm(x))."""
from __future__ import annotations

import gin
import torch
from torch import nn

from models.layers.attention.multihead import MultiHeadAttention
from models.layers.feedforward import FeedForward


@gin.configurable
class TransformerBlock(nn.Module):
    """One encoder layer; `norm_first=False` gives the original post-norm arrangement."""

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, dropout: float = 0.0,
                 norm_first: bool = True) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.attention = MultiHeadAttention(d_model, num_heads)
        self.feedforward = FeedForward(d_model, d_ff, dropout=dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_first:
            x = x + self.dropout(self.attention(self.norm1(x), mask))
            return x + self.dropout(self.feedforward(self.norm2(x)))
        x = self.norm1(x + self.dropout(self.attention(x, mask)))
        return self.norm2(x + self.dropout(self.feedforward(x)))
