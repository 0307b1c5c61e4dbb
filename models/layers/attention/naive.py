"""The paper's quadratic baseline: softmax(Q K^T / sqrt(d)) V with the L x L weights materialised.

PyTorch's SDPA (dense.py) fuses these steps; the benchmark reports ratios against both, because
the LRA speed table measured an explicit implementation like this one.
"""
from __future__ import annotations

import gin
import torch
from torch import nn

from models.layers.attention.masking import masked


@gin.configurable
class NaiveSoftmaxAttention(nn.Module):
    """Full attention computed step by step: logits, mask, softmax, dropout, weighted sum."""

    cross_attention = True

    def __init__(self, *, num_heads: int, head_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.scale = head_dim ** -0.5
        self.dropout = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = (q * self.scale) @ k.transpose(-1, -2)
        if key_mask is not None:
            logits = masked(logits, key_mask[:, None, None, :].bool())
        return self.dropout(logits.softmax(dim=-1)) @ v
