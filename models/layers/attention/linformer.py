"""Linformer (Wang et al., 2020): project keys and values along the length to k rows, O(L * k).

softmax(Q (E^T K)^T / sqrt(d)) (F^T V) with learned E, F of shape (max_len, k), shared by the
heads. Padded keys and values are zeroed before the projection, so padding adds nothing to it.
"""
from __future__ import annotations

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers.attention.masking import check_capacity, positions_for, real_mask


@gin.configurable
class LinformerAttention(nn.Module):
    """`share_kv=True` uses one projection for keys and values (LRA's released code does)."""

    cross_attention = True  # E and F project the keys' length; queries may be any number

    def __init__(self, *, num_heads: int, head_dim: int, max_len: int, low_rank: int = 256,
                 share_kv: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        require(low_rank >= 1, f"LinformerAttention.low_rank must be >= 1, got {low_rank}")
        require(max_len >= 1, f"LinformerAttention.max_len must be >= 1, got {max_len}")
        capacity = positions_for(max_len)
        # LeCun-normal over the length axis, as the released Dense layer initialises it.
        self.key_projection = nn.Parameter(torch.randn(capacity, low_rank) / capacity ** 0.5)
        self.value_projection = None if share_kv else nn.Parameter(torch.randn(capacity, low_rank) / capacity ** 0.5)
        self.scale = head_dim ** -0.5
        self.dropout = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, _, length, _ = k.shape  # the keys' length: under cross-attention it is not the queries'
        check_capacity(length, self.key_projection.shape[0], "LinformerAttention")
        keep = real_mask(key_mask, batch, length, k.device)[:, None, :, None].to(k.dtype)
        e = self.key_projection[:length]
        f = e if self.value_projection is None else self.value_projection[:length]
        keys = torch.einsum("lr,bhld->bhrd", e, k * keep)
        values = torch.einsum("lr,bhld->bhrd", f, v * keep)
        weights = ((q * self.scale) @ keys.transpose(-1, -2)).softmax(dim=-1)
        return self.dropout(weights) @ values
