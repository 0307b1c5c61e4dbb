"""Padding, blocking and masking helpers shared by the efficient attention cores.

Every blockwise core pads the sequence to a multiple of its block, works on contiguous blocks
and masks keys with the most negative finite value, so fully padded rows stay finite (no NaN).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from engine.errors import ConfigError


def real_mask(key_mask: torch.Tensor | None, batch: int, length: int, device: torch.device) -> torch.Tensor:
    """The (batch, length) real-token mask, all True when the caller gave none."""
    if key_mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    return key_mask.bool()


def pad_to_multiple(x: torch.Tensor | None, multiple: int, dim: int = 2, value: float = 0.0) -> torch.Tensor | None:
    """Pad `dim` of `x` at the end up to a multiple of `multiple`."""
    if x is None:
        return None
    extra = -x.shape[dim] % multiple
    if extra == 0:
        return x
    pad = [0, 0] * (x.dim() - 1 - dim % x.dim()) + [0, extra]
    return F.pad(x, pad, value=value)


def to_blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """(..., length, d) -> (..., length // block, block, d): contiguous blocks of neighbours."""
    return x.reshape(*x.shape[:-2], x.shape[-2] // block, block, x.shape[-1])


def from_blocks(x: torch.Tensor) -> torch.Tensor:
    """(..., blocks, block, d) -> (..., blocks * block, d)."""
    return x.reshape(*x.shape[:-3], x.shape[-3] * x.shape[-2], x.shape[-1])


def masked(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Replace disallowed logits by the most negative finite value (fully masked rows: uniform, not NaN)."""
    return logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)


def attend_parts(parts: list[tuple[torch.Tensor, torch.Tensor]], dropout: torch.nn.Module | None = None) -> torch.Tensor:
    """One softmax over several key sets for queries in blocks.

    Each part is (logits, values): logits (batch, heads, blocks, block, n) already masked; values
    either per query block (batch, heads, blocks, n, d) or shared by all blocks (batch, heads, n, d).
    Returns (batch, heads, blocks, block, d).
    """
    weights = torch.cat([logits for logits, _ in parts], dim=-1).softmax(dim=-1)
    if dropout is not None:
        weights = dropout(weights)
    out, start = None, 0
    for logits, values in parts:
        w = weights[..., start:start + logits.shape[-1]]
        start += logits.shape[-1]
        pattern = "bhnqk,bhnkd->bhnqd" if values.dim() == 5 else "bhnqk,bhkd->bhnqd"
        term = torch.einsum(pattern, w, values)
        out = term if out is None else out + term
    return out


def check_capacity(length: int, capacity: int, name: str) -> None:
    """Cores with per-position parameters cannot take sequences longer than they were built for."""
    if length > capacity:
        raise ConfigError(f"{name}: sequence length {length} exceeds its capacity {capacity}; "
                          f"bind {name}.max_len (the LRA gin files use %SEQ_LEN) to the longest sequence")


def positions_for(max_len: int) -> int:
    """Per-position tables hold `max_len` tokens plus one: encoders such as TransformerClassifier
    prepend a CLS token, so a task of SEQ_LEN tokens reaches the core with SEQ_LEN + 1."""
    return max_len + 1


def num_blocks(length: int, block: int) -> int:
    return math.ceil(length / block)


def global_key_part(q_blocks: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                    num_global: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The (logits, values) part in which every blocked query sees the first `num_global` keys."""
    logits = torch.einsum("bhnqd,bhgd->bhnqg", q_blocks, k[:, :, :num_global])
    return masked(logits, mask[:, None, None, None, :num_global]), v[:, :, :num_global]


def global_query_rows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, num_global: int,
                      dropout: torch.nn.Module | None = None) -> torch.Tensor:
    """Dense attention of the first `num_global` queries (e.g. CLS) over every key: (b, h, g, d)."""
    logits = masked(q[:, :, :num_global] @ k.transpose(-1, -2), mask[:, None, None, :])
    weights = logits.softmax(dim=-1)
    return (dropout(weights) if dropout is not None else weights) @ v


def with_neighbours(blocks: torch.Tensor, fill: float | bool = 0) -> torch.Tensor:
    """(..., n, b, d) -> (..., n, 3b, d): each block preceded by its left and followed by its right
    neighbour (`fill` past either end): the keys of a sliding window no wider than a block."""
    padded = F.pad(blocks, (0, 0, 0, 0, 1, 1), value=fill)
    n = blocks.shape[-3]
    return torch.cat([padded[..., :n, :, :], padded[..., 1:n + 1, :, :], padded[..., 2:, :, :]], dim=-2)


def attend_with_global_tokens(parts: list[tuple[torch.Tensor, torch.Tensor]], q: torch.Tensor, k: torch.Tensor,
                              v: torch.Tensor, mask: torch.Tensor, num_global: int, length: int,
                              dropout: torch.nn.Module | None = None) -> torch.Tensor:
    """Finish a blockwise pattern whose parts exclude the first `num_global` keys: add those keys for
    every query, run the joint softmax, and give the global queries dense rows. Returns (b, h, length, d)."""
    q_blocks = q.view(*parts[0][0].shape[:4], q.shape[-1])
    if num_global:
        parts = parts + [global_key_part(q_blocks, k, v, mask, num_global)]
    out = from_blocks(attend_parts(parts, dropout))[:, :, :length]
    if num_global:
        out = torch.cat([global_query_rows(q, k, v, mask, num_global, dropout), out[:, :, num_global:]], dim=2)
    return out
