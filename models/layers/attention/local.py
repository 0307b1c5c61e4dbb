"""Local attention: full softmax inside non-overlapping blocks of neighbouring tokens, O(L * block).

Blocks are contiguous (tokens 0..b-1, b..2b-1, ...). LRA's released code reshapes (L,) into
(block, L / block) and attends over the first axis, which groups the *strided* tokens j, j + L/b,
j + 2L/b, ...; `strided=True` reproduces that pattern (with a consistent padding mask) for study.
"""
from __future__ import annotations

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers.attention.masking import attend_parts, from_blocks, masked, pad_to_multiple, real_mask, to_blocks


@gin.configurable
class LocalAttention(nn.Module):
    """Each query attends to the keys of its own block of `block_size` tokens."""

    def __init__(self, *, num_heads: int, head_dim: int, block_size: int = 50, strided: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        require(block_size >= 1, f"LocalAttention.block_size must be >= 1, got {block_size}")
        self.block_size = block_size
        self.strided = strided
        self.scale = head_dim ** -0.5
        self.dropout = nn.Dropout(dropout)

    def group(self, x: torch.Tensor) -> torch.Tensor:
        """(..., Lp, d) -> (..., groups, block, d): contiguous blocks, or LRA's strided groups."""
        if not self.strided:
            return to_blocks(x, self.block_size)
        # LRA's reshape: position i * (Lp / b) + j lands in group j, slot i.
        grouped = x.reshape(*x.shape[:-2], self.block_size, x.shape[-2] // self.block_size, x.shape[-1])
        return grouped.transpose(-2, -3)

    def ungroup(self, x: torch.Tensor) -> torch.Tensor:
        return from_blocks(x.transpose(-2, -3) if self.strided else x)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, _, length, _ = q.shape
        mask = pad_to_multiple(real_mask(key_mask, batch, length, q.device), self.block_size, dim=1, value=False)
        q, k, v = (self.group(pad_to_multiple(t, self.block_size)) for t in (q * self.scale, k, v))
        mask_blocks = self.group(mask[..., None])[..., 0]  # (batch, groups, block)
        logits = masked(torch.einsum("bhnqd,bhnkd->bhnqk", q, k), mask_blocks[:, None, :, None, :])
        return self.ungroup(attend_parts([(logits, v)], self.dropout))[:, :, :length]
