"""A pool of learned weight embeddings and the single-head attention router that mixes them.

The router turns the current state (pooled per example, or each token) into a query, attends
over the K pool entries, and hands back the mixing weights; a hypernetwork then generates layer
weights from the mixture. Diagnostics (router entropy, pool usage) come from the weights.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import torch
from torch import nn

from engine.errors import require, require_int
from models.layers.pooling import pool

ROUTINGS = ("per_example", "per_token")


@dataclasses.dataclass
class Routing:
    """Mixing weights over the pool: (n, K) per example or (n, L, K) per token."""

    weights: torch.Tensor
    pool: torch.Tensor  # (K, d_embed)

    @property
    def per_token(self) -> bool:
        return self.weights.dim() == 3

    @functools.cached_property
    def mixture(self) -> torch.Tensor:
        """The mixed weight embedding z = alpha . E: (n, d_embed) or (n, L, d_embed); computed
        once per routing, though every generated layer of the block reads it."""
        return self.weights @ self.pool


class PoolRouter(nn.Module):
    """Pool E (K x d_embed) plus a single-head attention router: alpha = softmax(q k^T / sqrt(d_e)).

    The query comes from the layer-normed state (masked mean over real tokens per example, or
    every token); keys are a learned projection of the pool entries.
    """

    def __init__(self, d_model: int, *, pool_size: int, d_embed: int, routing: str = "per_example") -> None:
        super().__init__()
        require_int(pool_size, "pool_size", low=1)
        require_int(d_embed, "d_embed", low=1)
        require(routing in ROUTINGS, f"routing must be one of {ROUTINGS}, got {routing!r}")
        self.routing = routing
        self.pool = nn.Parameter(torch.randn(pool_size, d_embed))
        self.norm = nn.LayerNorm(d_model)
        self.query = nn.Linear(d_model, d_embed)
        self.key = nn.Linear(d_embed, d_embed, bias=False)
        self.scale = 1.0 / math.sqrt(d_embed)

    def forward(self, state: torch.Tensor, mask: torch.Tensor | None = None) -> Routing:
        h = self.norm(state)
        if self.routing == "per_example":
            h = pool(h, mask, "mean")
        scores = self.query(h) @ self.key(self.pool).transpose(0, 1) * self.scale
        return Routing(weights=torch.softmax(scores.float(), dim=-1).to(state.dtype), pool=self.pool)


def routing_diagnostics(weights: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Router entropy (mean over routed rows and steps) and pool usage from per-step weights.

    `router_entropy` near log K means the router mixes everything evenly, near 0 that it picks
    one entry; `pool_perplexity` = exp(entropy of the mean usage) is how many entries are used
    overall, and `pool_usage_max` the share of the busiest entry.
    """
    if not weights:
        return {}
    rows = torch.cat([w.detach().float().reshape(-1, w.shape[-1]) for w in weights])
    entropy = -(rows * rows.clamp_min(1e-12).log()).sum(dim=-1).mean()
    usage = rows.mean(dim=0)
    usage_entropy = -(usage * usage.clamp_min(1e-12).log()).sum()
    return {"router_entropy": entropy, "pool_perplexity": usage_entropy.exp(), "pool_usage_max": usage.max()}
