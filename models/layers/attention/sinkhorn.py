"""Sinkhorn attention (Tay et al., 2020): each block attends to itself and to a learned soft
re-ordering of the blocks, O(L * block).

A sort net maps each block's summed keys to logits over the blocks; softmax rows (LRA's released
choice) or `sinkhorn_iterations` of log-space Sinkhorn normalisation (the paper's doubly
stochastic relaxation, optional Gumbel noise while training) turn them into a soft permutation
that mixes key and value blocks. One softmax covers the local and the sorted block.
"""
from __future__ import annotations

import gin
import torch
from torch import nn

from engine.errors import ConfigError, require
from models.layers.attention.masking import (from_blocks, masked, num_blocks, pad_to_multiple, positions_for,
                                             real_mask, to_blocks)


def sinkhorn(log_alpha: torch.Tensor, allowed: torch.Tensor, iterations: int) -> torch.Tensor:
    """Alternate row and column normalisation in log space over the allowed entries only."""
    lowest = torch.finfo(log_alpha.dtype).min
    log_alpha = log_alpha.masked_fill(~allowed, lowest)
    for _ in range(iterations):
        log_alpha = (log_alpha - log_alpha.logsumexp(dim=-1, keepdim=True)).masked_fill(~allowed, lowest)
        log_alpha = (log_alpha - log_alpha.logsumexp(dim=-2, keepdim=True)).masked_fill(~allowed, lowest)
    return log_alpha.exp()


@gin.configurable
class SinkhornAttention(nn.Module):
    """Block-local attention plus attention to the sort net's soft choice of another block."""

    def __init__(self, *, num_heads: int, head_dim: int, max_len: int, block_size: int = 50,
                 sinkhorn_iterations: int = 0, temperature: float = 1.0, gumbel_noise: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        require(block_size >= 1, f"SinkhornAttention.block_size must be >= 1, got {block_size}")
        require(sinkhorn_iterations >= 0, f"SinkhornAttention.sinkhorn_iterations must be >= 0, got {sinkhorn_iterations}")
        require(temperature > 0, f"SinkhornAttention.temperature must be > 0, got {temperature}")
        self.block_size, self.iterations = block_size, sinkhorn_iterations
        self.temperature, self.gumbel_noise = temperature, gumbel_noise
        self.max_blocks = num_blocks(positions_for(max_len), block_size)
        self.sort_net = nn.Linear(head_dim, self.max_blocks)
        self.scale = head_dim ** -0.5
        self.dropout = nn.Dropout(dropout)

    def permutation(self, logits: torch.Tensor, block_real: torch.Tensor) -> torch.Tensor:
        """(b, h, n, n) sort logits -> soft permutation; row i mixes the blocks block i attends to."""
        if self.training and self.gumbel_noise:
            uniform = torch.rand_like(logits).clamp(1e-9, 1 - 1e-9)
            logits = logits - torch.log(-torch.log(uniform))
        logits = logits / self.temperature
        columns = block_real[:, None, None, :]
        if self.iterations == 0:
            return masked(logits, columns).softmax(dim=-1)
        return sinkhorn(logits, columns & block_real[:, None, :, None], self.iterations)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, _, length, _ = q.shape
        b = self.block_size
        mask = pad_to_multiple(real_mask(key_mask, batch, length, q.device), b, dim=1, value=False)
        # Each of q, k, v becomes one contiguous blocked copy that the scale and the key mask then
        # change in place (the products below would otherwise copy the heads' strided views).
        qb, kb, vb = own_blocks(q, b).mul_(self.scale), own_blocks(k, b), own_blocks(v, b)
        blocks = qb.shape[2]
        if blocks > self.max_blocks:
            raise ConfigError(f"SinkhornAttention: {blocks} blocks of {b} exceed the sort net's {self.max_blocks}; "
                              "bind SinkhornAttention.max_len (the LRA gin files use %SEQ_LEN) to the longest sequence")
        mask_blocks = mask.view(batch, blocks, b)
        block_real = mask_blocks.any(dim=-1)
        # Padded slots are zeroed before blocks are summed or mixed, so whatever the padding holds
        # never reaches a real token (pad_to_multiple pads with zeros; masked keys are zeroed here).
        if key_mask is not None:
            keep = mask_blocks[:, None, :, :, None].to(kb.dtype)
            kb.mul_(keep)
            vb.mul_(keep)
        perm = self.permutation(self.sort_net(kb.sum(dim=-2))[..., :blocks], block_real)
        # A slot of the sorted block is real where any block mixed into it has a real token there.
        sorted_real = torch.einsum("bhnm,bmk->bhnk", perm, mask_blocks.to(perm.dtype)) > 0
        # One softmax over the block's own keys and the sorted block's: both key sets side by side.
        keys = torch.cat([kb, torch.einsum("bhnm,bhmkd->bhnkd", perm, kb)], dim=-2)
        values = torch.cat([vb, torch.einsum("bhnm,bhmkd->bhnkd", perm, vb)], dim=-2)
        real = torch.cat([mask_blocks[:, None].expand_as(sorted_real), sorted_real], dim=-1)
        logits = (qb @ keys.transpose(-1, -2)).masked_fill_(~real[..., None, :], torch.finfo(qb.dtype).min)
        return from_blocks(self.dropout(logits.softmax(dim=-1)) @ values)[:, :, :length]


def own_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """(b, h, L, d) -> a new contiguous (b, h, blocks, block, d) tensor, zero-padded: safe to change in place."""
    padded = pad_to_multiple(x, block)
    if padded is x:
        padded = x.clone(memory_format=torch.contiguous_format)
    return to_blocks(padded, block)
