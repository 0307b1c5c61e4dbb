"""NeRF-style Fourier features of coordinates: [x, sin(2^k pi x), cos(2^k pi x)] for k < L.

Each point is encoded on its own (no normalisation across the point set), so a point's features
do not depend on which other points are queried: what keeps field models resolution independent.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from engine.errors import require


class FourierFeatures(nn.Module):
    """(..., in_dim) coordinates -> (..., in_dim * (1 + 2 * num_frequencies)) features."""

    def __init__(self, in_dim: int, num_frequencies: int, *, include_input: bool = True) -> None:
        super().__init__()
        require(in_dim >= 1, f"Fourier features need coordinates of dimension >= 1, got {in_dim}")
        require(num_frequencies >= 0, f"num_frequencies must be >= 0, got {num_frequencies}")
        self.in_dim = in_dim
        self.include_input = include_input
        self.register_buffer("frequencies", math.pi * 2.0 ** torch.arange(num_frequencies, dtype=torch.float32),
                             persistent=False)

    @property
    def out_dim(self) -> int:
        return self.in_dim * (int(self.include_input) + 2 * len(self.frequencies))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        angles = (coords[..., None] * self.frequencies.to(coords.dtype)).flatten(-2)
        parts = [coords] if self.include_input else []
        return torch.cat(parts + [torch.sin(angles), torch.cos(angles)], dim=-1)
