"""T5's relative position bias: a learned scalar per (head, distance bucket) added to the
attention logits, with exact buckets for near distances and log-spaced ones for far distances.

One table is shared by all layers of a stack (T5 v1.0), so it costs num_buckets * heads parameters.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def relative_position_bucket(relative: torch.Tensor, *, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> torch.Tensor:
    """Bucket of each `key position - query position` (Mesh TensorFlow / T5 rule)."""
    bucket = torch.zeros_like(relative)
    distance = -relative
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + (distance < 0).long() * num_buckets
        distance = distance.abs()
    else:
        distance = distance.clamp_min(0)  # a causal decoder never looks at later keys
    exact = num_buckets // 2
    # log(0) is masked out by the `distance < exact` branch below; clamp to keep it finite.
    far = exact + (torch.log(distance.float().clamp_min(1) / exact)
                   / math.log(max_distance / exact) * (num_buckets - exact)).long()
    far = far.clamp_max(num_buckets - 1)
    return bucket + torch.where(distance < exact, distance, far)


class RelativePositionBias(nn.Module):
    """(query positions, key positions) -> additive bias (1, heads, queries, keys)."""

    def __init__(self, num_heads: int, *, bidirectional: bool, num_buckets: int = 32,
                 max_distance: int = 128) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.table = nn.Embedding(num_buckets, num_heads)

    def forward(self, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
        relative = key_positions[None, :] - query_positions[:, None]
        buckets = relative_position_bucket(relative, bidirectional=self.bidirectional,
                                           num_buckets=self.num_buckets, max_distance=self.max_distance)
        return self.table(buckets).permute(2, 0, 1)[None]


def causal_bias(length: int, device: torch.device | None = None) -> torch.Tensor:
    """(1, 1, length, length) additive mask: 0 on and below the diagonal, -inf above."""
    upper = torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
    return torch.zeros(length, length, device=device).masked_fill(upper, float("-inf"))[None, None]
