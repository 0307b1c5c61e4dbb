"""Linformer (Wang et al., 2020): project keys and values along the length to k rows, O(L * k).

softmax(Q (E^T K)^T / sqrt(d)) (F^T V) with learned E, F of shape (max_len, k), shared by the
heads. Padded keys and values are zeroed before the projection, so padding adds nothing to it.
"""
from __future__ import annotations

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers.attention.masking import check_capacity, positions_for


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
        batch, heads, length, dim = k.shape  # the keys' length: under cross-attention it is not the queries'
        check_capacity(length, self.key_projection.shape[0], "LinformerAttention")
        e = self.key_projection[:length]
        f = e if self.value_projection is None else self.value_projection[:length]

        def project(x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
            """(b, h, L, d) -> (b, h, k, d): projection^T x along the length, all heads in one
            product on the (b, L, h * d) layout the heads were split from (a view, not a copy)."""
            flat = x.transpose(1, 2).reshape(batch, length, heads * dim)
            if key_mask is not None:
                flat = flat * key_mask[:, :, None].bool().to(flat.dtype)
            rows = torch.bmm(projection.t().expand(batch, -1, -1), flat)
            return rows.view(batch, -1, heads, dim).transpose(1, 2)

        keys = project(k, e) * self.scale  # the scale on k rows rather than on L query rows
        weights = (q @ keys.transpose(-1, -2)).softmax(dim=-1)
        return self.dropout(weights) @ project(v, f)
