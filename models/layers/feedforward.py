"""Position-wise feed-forward layers: the MLP and its gated (GLU) variants."""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from torch import nn


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(1.702 x): the GELU approximation OpenAI's CLIP was trained with."""
    return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "silu": F.silu, "tanh": torch.tanh, "quick_gelu": quick_gelu}


def activation(name: str):
    if name not in ACTIVATIONS:
        from engine.errors import ConfigError
        raise ConfigError(f"unknown activation {name!r}; choose from {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


@gin.configurable
class FeedForward(nn.Module):
    """d_model -> d_ff -> d_model; with `gated`, act(x W) * (x V) as in GLU variants (GEGLU, SwiGLU)."""

    def __init__(self, d_model: int, d_ff: int, *, activation_name: str = "gelu", gated: bool = False,
                 dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        self.act = activation(activation_name)
        self.gated = gated
        self.inner = nn.Linear(d_model, d_ff, bias=bias)
        self.gate = nn.Linear(d_model, d_ff, bias=bias) if gated else None
        self.outer = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.inner(x))
        if self.gate is not None:
            hidden = hidden * self.gate(x)
        return self.outer(self.dropout(hidden))
