"""Reformer LSH attention (Kitaev et al., 2020): shared-QK attention inside hash buckets, O(L * chunk).

Per hash round, vectors are hashed by a random rotation (bucket = argmax [xR, -xR]), sorted by
(bucket, position), cut into chunks, and each chunk attends to itself and the chunk before it;
the results are unsorted and the rounds combined by their log-sum-exp, with pairs met in several
rounds counted once. Keys are the unit-normalised queries; a token attends to itself only when
nothing else is available. Padded tokens are sorted after every real one, so they never change
which real tokens share a chunk.
"""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import require
from models.layers.attention.masking import pad_to_multiple, real_mask

SELF_LOGIT = -1e5  # the paper's value: attend to yourself only when no other key is available


def shift_chunks(x: torch.Tensor, dim: int, fill: float | bool) -> torch.Tensor:
    """The previous chunk along `dim` at each index (`fill` before the first): the look-back keys."""
    first = torch.full_like(x.narrow(dim, 0, 1), fill)
    return torch.cat([first, x.narrow(dim, 0, x.shape[dim] - 1)], dim=dim)


@gin.configurable
class ReformerAttention(nn.Module):
    """LSH attention with `n_hashes` rounds of `n_buckets` buckets, chunks of `chunk_len`."""

    uses_keys = False  # shared-QK: MultiHeadAttention builds no key projection

    def __init__(self, *, num_heads: int, head_dim: int, n_hashes: int = 1, n_buckets: int = 32,
                 chunk_len: int = 64, redraw: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        require(n_hashes >= 1, f"ReformerAttention.n_hashes must be >= 1, got {n_hashes}")
        require(n_buckets == 1 or (n_buckets >= 2 and n_buckets % 2 == 0),
                f"ReformerAttention.n_buckets must be 1 or an even number (argmax over [xR, -xR]), got {n_buckets}")
        require(chunk_len >= 1, f"ReformerAttention.chunk_len must be >= 1, got {chunk_len}")
        self.n_hashes, self.n_buckets, self.chunk_len, self.redraw = n_hashes, n_buckets, chunk_len, redraw
        self.scale = head_dim ** -0.5
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("rotations", torch.randn(n_hashes, head_dim, max(n_buckets // 2, 1)))

    def hash(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, heads, L, d) -> bucket ids (batch, heads, rounds, L)."""
        if self.n_buckets == 1:
            return torch.zeros(*x.shape[:2], self.n_hashes, x.shape[2], dtype=torch.long, device=x.device)
        if self.training and self.redraw:  # fresh rotations every training step, as in the paper
            self.rotations.normal_()
        rotated = torch.einsum("bhld,rdk->bhrlk", x.detach(), self.rotations)
        return torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)

    def forward(self, q: torch.Tensor, k: torch.Tensor | None, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, heads, length, dim = q.shape
        c, rounds = self.chunk_len, self.n_hashes
        mask = pad_to_multiple(real_mask(key_mask, batch, length, q.device), c, dim=1, value=False)
        q, v = pad_to_multiple(q, c), pad_to_multiple(v, c)
        padded = q.shape[2]
        chunks = padded // c

        # Sort each round by (padding last, bucket, position).
        buckets = self.hash(q)
        position = torch.arange(padded, device=q.device)
        sort_key = ((~mask).long()[:, None, None, :] * self.n_buckets + buckets) * padded + position
        order = sort_key.argsort(dim=-1)  # (batch, heads, rounds, Lp): position at each sorted slot
        undo = order.argsort(dim=-1)      # sorted slot of each position

        def sort(x: torch.Tensor) -> torch.Tensor:  # (b, h, Lp, d) -> (b, h, rounds, chunks, c, d)
            index = order.reshape(batch, heads, rounds * padded, 1).expand(-1, -1, -1, x.shape[-1])
            return x.gather(2, index).view(batch, heads, rounds, chunks, c, x.shape[-1])

        sq, sv = sort(q), sort(v)
        spos = order.view(batch, heads, rounds, chunks, c)
        smask = mask[:, None, None, :].expand(-1, heads, rounds, -1).gather(3, order).view(spos.shape)
        # Keys are the unit queries; they carry the 1/sqrt(d) scale (q . s k = s q . k), so no
        # scaled copy of the queries is kept for backward.
        sk = F.normalize(sq, dim=-1) * self.scale
        # Look one chunk back, within the same round only.
        keys = torch.cat([sk, shift_chunks(sk, 3, 0.0)], dim=-2)
        values = torch.cat([sv, shift_chunks(sv, 3, 0.0)], dim=-2)
        kmask = torch.cat([smask, shift_chunks(smask, 3, False)], dim=-1)

        logits = torch.einsum("bhrnqd,bhrnkd->bhrnqk", sq, keys)
        logits = logits.masked_fill_(~kmask[..., None, :], torch.finfo(logits.dtype).min)
        # Positions are unique within a round, so a query meets itself only on the diagonal of its
        # own chunk (the first c keys); there it gets SELF_LOGIT when it is real.
        logits[..., :c].diagonal(dim1=-2, dim2=-1).masked_fill_(smask, SELF_LOGIT)
        if rounds > 1:
            kpos = torch.cat([spos, shift_chunks(spos, 3, -1)], dim=-1)
            logits = logits - self.duplicate_counts(undo, spos, kpos).log()

        lse = logits.logsumexp(dim=-1)  # (b, h, rounds, chunks, c)
        out = self.dropout(torch.exp(logits - lse[..., None])) @ values
        # Unsort, then weight each round by its share of the total softmax mass.
        out = out.view(batch, heads, rounds, padded, dim).gather(3, undo[..., None].expand(-1, -1, -1, -1, dim))
        lse = lse.view(batch, heads, rounds, padded).gather(3, undo)
        out = (out * lse.softmax(dim=2)[..., None]).sum(dim=2)
        return out[:, :, :length]

    def duplicate_counts(self, undo: torch.Tensor, spos: torch.Tensor, kpos: torch.Tensor) -> torch.Tensor:
        """In how many rounds each (query, key) pair falls in the same or adjacent chunk, so that
        a key met in several rounds is counted once in the combined softmax."""
        batch, heads, rounds = undo.shape[:3]
        chunk_of = undo // self.chunk_len  # (b, h, rounds', Lp): chunk of each position per round

        def chunks_at(positions: torch.Tensor) -> torch.Tensor:  # -> (b, h, rounds', rounds, n, slots)
            flat = positions.clamp_min(0).reshape(batch, heads, 1, -1).expand(-1, -1, rounds, -1)
            return chunk_of.gather(3, flat).view(batch, heads, rounds, *positions.shape[2:])

        query_chunk = chunks_at(spos)[..., :, None]
        key_chunk = chunks_at(kpos)[..., None, :]
        same_window = (key_chunk == query_chunk) | (key_chunk == query_chunk - 1)
        return same_window.sum(dim=2).clamp_min(1).to(torch.float32)
