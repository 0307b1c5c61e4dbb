"""Positional encodings: learned tables and sinusoidal timing signals (also for UT steps)."""
from __future__ import annotations

import math

import torch
from torch import nn


def sinusoid(positions: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Transformer timing signal: sin on even channels, cos on odd, for any real positions."""
    half = dim // 2
    freqs = torch.exp(-math.log(base) * torch.arange(half, dtype=torch.float32, device=positions.device) / half)
    angles = positions.float()[..., None] * freqs
    signal = torch.zeros(*positions.shape, dim, device=positions.device)
    signal[..., 0:2 * half:2] = torch.sin(angles)
    signal[..., 1:2 * half:2] = torch.cos(angles)
    return signal


class LearnedPositions(nn.Module):
    """A learned embedding per position, added to the input."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(max_len, d_model) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.table.shape[0]:
            from engine.errors import ConfigError
            raise ConfigError(f"sequence length {x.shape[1]} exceeds the model's max_len {self.table.shape[0]}")
        return x + self.table[: x.shape[1]]


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal positions, added to the input; works for any length."""

    def __init__(self, max_len: int, d_model: int) -> None:
        super().__init__()
        self.d_model = d_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=x.device)
        return x + sinusoid(positions, self.d_model).to(x.dtype)


POSITIONS = {"learned": LearnedPositions, "sinusoidal": SinusoidalPositions}


def make_positions(kind: str, max_len: int, d_model: int) -> nn.Module:
    if kind not in POSITIONS:
        from engine.errors import ConfigError
        raise ConfigError(f"unknown positional encoding {kind!r}; choose from {sorted(POSITIONS)}")
    return POSITIONS[kind](max_len, d_model)
