"""BigBird attention (Zaheer et al., 2020; ITC form): sliding, global and random blocks, O(L * block).

Query block n sees key blocks n-1, n, n+1, the global first and last (real) blocks and
`num_random_blocks` others; the global blocks' queries see every key. Random picks come from a
fixed per-head priority table over (query block, key block), restricted per example to real blocks,
so adding padding never changes which real keys a real query sees.
"""
from __future__ import annotations

import gin
import torch
from torch import nn

from engine.errors import ConfigError, require
from models.layers.attention.masking import (attend_parts, from_blocks, masked, num_blocks, pad_to_multiple,
                                             positions_for, real_mask, to_blocks)


@gin.configurable
class BigBirdAttention(nn.Module):
    """Block-sparse attention: 3 sliding + 2 global + r random key blocks per query block."""

    def __init__(self, *, num_heads: int, head_dim: int, max_len: int, block_size: int = 64,
                 num_random_blocks: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        require(block_size >= 1, f"BigBirdAttention.block_size must be >= 1, got {block_size}")
        require(num_random_blocks >= 0, f"BigBirdAttention.num_random_blocks must be >= 0, got {num_random_blocks}")
        self.block_size, self.num_random = block_size, num_random_blocks
        self.max_blocks = num_blocks(positions_for(max_len), block_size)
        # Drawn once from the seeded torch RNG and checkpointed: the random graph is part of the model.
        self.register_buffer("priorities", torch.rand(num_heads, self.max_blocks, self.max_blocks))
        self.scale = head_dim ** -0.5
        self.dropout = nn.Dropout(dropout)

    def key_blocks(self, block_real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per (example, head, query block): key-block indices (b, h, n, m), which are real and not
        repeated (b, h, n, m), and the last real block of each example (b,)."""
        batch, blocks = block_real.shape
        device = block_real.device
        n = torch.arange(blocks, device=device)
        real_count = (block_real * (n + 1)).amax(dim=1).clamp_min(1)  # blocks up to the last real one
        last = real_count - 1
        rows = n[None, :].expand(batch, -1)
        fixed = torch.stack([rows - 1, rows, rows + 1, torch.zeros_like(rows), last[:, None].expand(-1, blocks)], -1)
        near_last = (last[:, None] - rows).abs() <= 1
        fixed_ok = torch.stack([rows >= 1, rows < real_count[:, None], rows + 1 < real_count[:, None],
                                rows >= 2, ~near_last & (last[:, None] != 0)], -1)  # no repeats of sliding blocks
        heads = self.priorities.shape[0]
        m = n[None, None, :]
        taken = ((m - n[None, :, None]).abs() <= 1) | (m == 0) | (m == last[:, None, None]) | (m >= real_count[:, None, None])
        priorities = self.priorities[:, :blocks, :blocks][None].masked_fill(taken[:, None], -1.0)
        top, random = priorities.topk(min(self.num_random, blocks), dim=-1)
        index = torch.cat([fixed[:, None].expand(-1, heads, -1, -1), random], dim=-1).clamp(0, blocks - 1)
        valid = torch.cat([fixed_ok[:, None].expand(-1, heads, -1, -1), top >= 0], dim=-1)
        return index, valid, last

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, heads, length, dim = q.shape
        b = self.block_size
        mask = pad_to_multiple(real_mask(key_mask, batch, length, q.device), b, dim=1, value=False)
        q, k, v = (pad_to_multiple(t, b) for t in (q * self.scale, k, v))
        qb, kb, vb = (to_blocks(t, b) for t in (q, k, v))
        blocks = qb.shape[2]
        if blocks > self.max_blocks:
            raise ConfigError(f"BigBirdAttention: {blocks} blocks of {b} exceed the random graph's {self.max_blocks}; "
                              "bind BigBirdAttention.max_len (the LRA gin files use %SEQ_LEN) to the longest sequence")
        mask_blocks = mask.view(batch, blocks, b)
        index, valid, last = self.key_blocks(mask_blocks.any(dim=-1))
        per = index.shape[-1]

        def gather(x: torch.Tensor) -> torch.Tensor:  # (b, h, n, b, d) -> (b, h, n, per * b, d)
            flat = index.reshape(batch, heads, blocks * per, 1, 1).expand(-1, -1, -1, b, x.shape[-1])
            return x.gather(2, flat).view(batch, heads, blocks, per * b, x.shape[-1])

        key_real = mask_blocks[:, None].expand(-1, heads, -1, -1).gather(2, index.reshape(batch, heads, -1, 1).expand(-1, -1, -1, b))
        key_real = (key_real.view(batch, heads, blocks, per, b) & valid[..., None]).view(batch, heads, blocks, 1, per * b)
        logits = masked(torch.einsum("bhnqd,bhnkd->bhnqk", qb, gather(kb)), key_real)
        out = attend_parts([(logits, gather(vb))], self.dropout)

        # Global query blocks (first and last real) attend to every key.
        global_index = torch.stack([torch.zeros_like(last), last], dim=1)  # (b, 2)
        select = global_index[:, None, :, None, None].expand(-1, heads, -1, b, dim)
        global_q = qb.gather(2, select).flatten(2, 3)  # (b, h, 2b, d)
        weights = masked(global_q @ k.transpose(-1, -2), mask[:, None, None, :]).softmax(dim=-1)
        global_out = (self.dropout(weights) @ v).view(batch, heads, 2, b, dim)
        out = out.scatter(2, select, global_out)
        return from_blocks(out)[:, :, :length]
