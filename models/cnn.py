"""A small convolutional classifier: conv blocks with pooling, global average pool, linear head.

The model with the strongest spatial inductive bias here (translation equivariance, locality),
used as a teacher for distillation and as a GIFT backbone.
"""
from __future__ import annotations

from typing import Sequence

import gin
import torch
from torch import nn

from models.layers import StagedModel


class _ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, pool: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
        self.norm = nn.GroupNorm(min(8, c_out), c_out)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.norm(self.conv(x))))


@gin.configurable
class SmallCNN(StagedModel):
    """Conv(3x3) + GroupNorm + ReLU blocks; `pool_every` blocks halve the resolution."""

    def __init__(self, *, channels: int, num_classes: int, widths: Sequence[int] = (32, 64, 64),
                 pool_every: int = 1) -> None:
        super().__init__()
        self.stem = nn.Identity()
        sizes = [channels, *widths]
        self.stages = nn.ModuleList(_ConvBlock(a, b, pool=(i + 1) % pool_every == 0)
                                    for i, (a, b) in enumerate(zip(sizes, sizes[1:])))
        self.head = nn.Linear(sizes[-1], num_classes)

    def readout(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.mean(dim=(-2, -1)) if hidden.dim() == 4 else hidden
