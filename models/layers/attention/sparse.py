"""Sparse Transformer's fixed pattern (Child et al., 2019), computed block by block, never as an L x L mask.

A query sees every key of its own block of `block_size` tokens, plus the last `summary_size`
"summary" tokens of every other block; cost O(L * (b + c L / b)). Global tokens (LRA leaves the
CLS row and column unmasked) see and are seen by everything.
"""
from __future__ import annotations

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers.attention.masking import (attend_with_global_tokens, masked, pad_to_multiple, real_mask,
                                             to_blocks)


@gin.configurable
class SparseAttention(nn.Module):
    """Union of the paper's A(1) (same block) and A(2) (summary columns); optionally causal."""

    def __init__(self, *, num_heads: int, head_dim: int, block_size: int = 50, summary_size: int = 10,
                 causal: bool = False, global_tokens: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        require(block_size >= 1, f"SparseAttention.block_size must be >= 1, got {block_size}")
        require(1 <= summary_size <= block_size,
                f"SparseAttention.summary_size must be in [1, block_size = {block_size}], got {summary_size}")
        require(global_tokens >= 0, f"SparseAttention.global_tokens must be >= 0, got {global_tokens}")
        require(not (causal and global_tokens),
                "SparseAttention: a global token would see the future; set global_tokens = 0 with causal = True")
        self.block_size, self.summary_size = block_size, summary_size
        self.causal, self.global_tokens = causal, global_tokens
        self.scale = head_dim ** -0.5
        self.dropout = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, heads, length, dim = q.shape
        b, c, g = self.block_size, self.summary_size, min(self.global_tokens, length)
        mask = pad_to_multiple(real_mask(key_mask, batch, length, q.device), b, dim=1, value=False)
        q, k, v = (pad_to_multiple(t, b) for t in (q * self.scale, k, v))
        qb, kb, vb = (to_blocks(t, b) for t in (q, k, v))
        blocks = qb.shape[2]
        position = torch.arange(blocks * b, device=q.device).view(blocks, b)
        query_block = torch.arange(blocks, device=q.device)

        # A(1): the query's own block. Global keys are left to their own part (no double counting).
        local = mask.view(batch, 1, blocks, 1, b) & (position >= g).view(1, 1, blocks, 1, b)
        if self.causal:
            local = local & torch.ones(b, b, dtype=torch.bool, device=q.device).tril()
        local_logits = masked(torch.einsum("bhnqd,bhnkd->bhnqk", qb, kb), local)

        # A(2): the summary tokens of the *other* blocks (those of the own block are already in A(1)).
        summary_keys = kb[..., b - c:, :].reshape(batch, heads, blocks * c, dim)
        summary_values = vb[..., b - c:, :].reshape(batch, heads, blocks * c, dim)
        summary_mask = mask.view(batch, blocks, b)[..., b - c:].reshape(batch, blocks * c)
        summary_block = query_block.repeat_interleave(c)
        other = summary_block[None, :] < query_block[:, None] if self.causal else \
            summary_block[None, :] != query_block[:, None]
        summary = (summary_mask[:, None, None, None, :] & other[None, None, :, None, :]
                   & (position[:, b - c:].reshape(-1) >= g).view(1, 1, 1, 1, -1))
        summary_logits = masked(torch.einsum("bhnqd,bhkd->bhnqk", qb, summary_keys), summary)

        parts = [(local_logits, vb), (summary_logits, summary_values)]
        return attend_with_global_tokens(parts, q, k, v, mask, g, length, self.dropout)
