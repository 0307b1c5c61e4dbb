"""Longformer attention (Beltagy et al., 2020): a sliding window plus global tokens, O(L * window).

The window is computed in blocks as wide as its larger half: each query block meets its own and
its two neighbouring key blocks, and a relative-position mask trims them to the window. Global
tokens (the first `global_tokens` positions, CLS in LRA) attend to and are attended by every token.
"""
from __future__ import annotations

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers.attention.masking import (attend_with_global_tokens, masked, pad_to_multiple, real_mask,
                                             to_blocks, with_neighbours)


@gin.configurable
class LongformerAttention(nn.Module):
    """Query i sees keys i - (w - w // 2) .. i + w // 2 and the global tokens."""

    def __init__(self, *, num_heads: int, head_dim: int, window: int = 512, global_tokens: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        require(window >= 1, f"LongformerAttention.window must be >= 1, got {window}")
        require(global_tokens >= 0, f"LongformerAttention.global_tokens must be >= 0, got {global_tokens}")
        self.left, self.right = window - window // 2, window // 2
        self.global_tokens = global_tokens
        self.scale = head_dim ** -0.5
        self.dropout = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, _, length, _ = q.shape
        b = max(1, min(max(self.left, self.right), length))  # a block spans the larger half-window
        g = min(self.global_tokens, length)
        mask = pad_to_multiple(real_mask(key_mask, batch, length, q.device), b, dim=1, value=False)
        q, k, v = (pad_to_multiple(t, b) for t in (q * self.scale, k, v))
        qb = to_blocks(q, b)
        blocks = qb.shape[2]
        keys, values = with_neighbours(to_blocks(k, b)), with_neighbours(to_blocks(v, b))
        key_mask_blocks = with_neighbours(mask.view(batch, blocks, b, 1), fill=False)[..., 0]  # (batch, n, 3b)

        offset = torch.arange(3 * b, device=q.device)[None, :] - b - torch.arange(b, device=q.device)[:, None]
        in_window = (offset >= -self.left) & (offset <= self.right)  # (b, 3b): key minus query position
        key_position = (torch.arange(blocks, device=q.device)[:, None] - 1) * b + torch.arange(3 * b, device=q.device)
        allowed = (key_mask_blocks[:, None, :, None, :] & in_window[None, None, None]
                   & (key_position >= g)[None, None, :, None, :])
        parts = [(masked(torch.einsum("bhnqd,bhnkd->bhnqk", qb, keys), allowed), values)]
        return attend_with_global_tokens(parts, q, k, v, mask, g, length, self.dropout)
