"""Switch Transformer feed-forward: top-1 routing of each token to one of several expert FFNs.

Each expert takes at most `capacity_factor * tokens / experts` tokens; the rest skip the layer
(their residual passes through unchanged). The load-balance loss (Fedus et al. 2021, Eq. 4)
is returned already weighted, for the model to hand back as `aux_loss`.
"""
from __future__ import annotations

import math

import gin
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import require
from models.layers.feedforward import FeedForward


def load_balance_loss(router_probs: torch.Tensor, expert_index: torch.Tensor) -> torch.Tensor:
    """E * sum_i f_i * P_i: f_i the fraction of tokens sent to expert i, P_i its mean router
    probability. Equals 1 when routing is uniform, E when every token goes to one expert."""
    num_experts = router_probs.shape[-1]
    fraction = F.one_hot(expert_index, num_experts).float().mean(0)
    return num_experts * (fraction * router_probs.float().mean(0)).sum()


def expert_capacity(tokens: int, num_experts: int, capacity_factor: float) -> int:
    return max(1, math.ceil(capacity_factor * tokens / num_experts))


@gin.configurable
class SwitchFeedForward(nn.Module):
    """Top-1 mixture of `num_experts` FeedForward experts; forward returns (output, stats)."""

    def __init__(self, d_model: int, d_ff: int, *, num_experts: int = 4, capacity_factor: float = 1.25,
                 balance_weight: float = 0.01, activation_name: str = "relu", gated: bool = False,
                 bias: bool = False) -> None:
        super().__init__()
        require(num_experts >= 1, f"SwitchFeedForward.num_experts must be >= 1, got {num_experts}")
        require(capacity_factor > 0, f"SwitchFeedForward.capacity_factor must be > 0, got {capacity_factor}")
        require(balance_weight >= 0, f"SwitchFeedForward.balance_weight must be >= 0, got {balance_weight}")
        self.num_experts = num_experts
        self.capacity_factor = capacity_factor
        self.balance_weight = balance_weight
        self.router = nn.Linear(d_model, num_experts, bias=False)
        self.experts = nn.ModuleList(FeedForward(d_model, d_ff, activation_name=activation_name, gated=gated,
                                                 bias=bias) for _ in range(num_experts))

    def route(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router probabilities, chosen expert, its gate value, and whether it fits in capacity."""
        probs = torch.softmax(self.router(tokens).float(), dim=-1)  # fp32 routing, as in Switch
        gate, expert = probs.max(dim=-1)
        onehot = F.one_hot(expert, self.num_experts)
        # A token's place in its expert's queue, in token order: later tokens are the ones dropped.
        place = (onehot.cumsum(0) * onehot).sum(-1) - 1
        capacity = expert_capacity(len(tokens), self.num_experts, self.capacity_factor)
        return probs, expert, gate, place < capacity

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        tokens = x.reshape(-1, x.shape[-1])
        probs, expert, gate, kept = self.route(tokens)
        out = torch.zeros_like(tokens)
        for index, ffn in enumerate(self.experts):
            # Every expert runs, on no tokens if none chose it: its parameters then get a zero
            # gradient instead of none, so every rank reduces the same tensors (DDP, FSDP, ZeRO).
            chosen = torch.nonzero((expert == index) & kept).squeeze(-1)
            out.index_copy_(0, chosen, ffn(tokens[chosen]) * gate[chosen, None].to(tokens.dtype))
        stats = {"aux_loss": self.balance_weight * load_balance_loss(probs, expert),
                 "dropped_fraction": 1.0 - kept.float().mean()}
        return out.reshape(x.shape), stats
