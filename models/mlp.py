"""A multi-layer perceptron classifier over flattened inputs (a model without spatial bias)."""
from __future__ import annotations

from typing import Sequence

import gin
import torch
from torch import nn

from models.layers import StagedModel, activation


class _Dense(nn.Module):
    def __init__(self, d_in: int, d_out: int, act: str, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.act = activation(act)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.act(self.linear(x)))


@gin.configurable
class MLP(StagedModel):
    """Flatten -> hidden layers (Linear + activation) -> linear head."""

    def __init__(self, *, input_dim: int, num_classes: int, hidden: Sequence[int] = (256, 256),
                 activation_name: str = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Flatten()
        widths = [input_dim, *hidden]
        self.stages = nn.ModuleList(_Dense(a, b, activation_name, dropout) for a, b in zip(widths, widths[1:]))
        self.head = nn.Linear(widths[-1], num_classes)
