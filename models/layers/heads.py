"""Classifier heads: a linear layer, or the LRA-style MLP (Dense -> ReLU -> ... -> Dense).

Shared by the Transformer classifier and the two-tower retrieval model, so both read the
head the same way from gin (`head_hidden` widths; empty = one linear layer).
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from engine.errors import require


def make_head(d_in: int, num_classes: int, hidden: Sequence[int] = ()) -> nn.Module:
    """`d_in -> hidden[0] -> ReLU -> ... -> num_classes`; with no hidden widths a plain Linear
    (so existing checkpoints keep their `head.weight` / `head.bias` names)."""
    hidden = tuple(int(width) for width in hidden)
    require(all(width > 0 for width in hidden), f"head hidden widths must be positive, got {hidden}")
    if not hidden:
        return nn.Linear(d_in, num_classes)
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(d_in, width), nn.ReLU()]
        d_in = width
    layers.append(nn.Linear(d_in, num_classes))
    return nn.Sequential(*layers)
