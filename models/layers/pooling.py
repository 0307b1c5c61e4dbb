"""Sequence pooling for classifiers: the first (CLS) token or the mean over real tokens."""
from __future__ import annotations

import torch

from engine.errors import ConfigError

POOLINGS = ("cls", "mean")


def check_pooling(kind: str) -> None:
    if kind not in POOLINGS:
        raise ConfigError(f"unknown pooling {kind!r}; choose from {POOLINGS}")


def pool(x: torch.Tensor, mask: torch.Tensor | None, kind: str) -> torch.Tensor:
    """(batch, length, d) -> (batch, d)."""
    if kind == "cls":
        return x[:, 0]
    if mask is None:
        return x.mean(dim=1)
    weights = mask.to(x.dtype)[..., None]
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
