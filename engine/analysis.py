"""Parameter and FLOP counts for any model, and the generic fits studies are read with.

FLOPs are counted on a real forward pass with `torch.utils.flop_counter` (matmuls,
convolutions, attention), so they hold for any model. A model's own closed form, where it has
one, is its `flops_per_example(batch)` (see models/t5.py); paper-specific fits live beside
their reproductions in launch/reproductions/.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch


def count_parameters(module: torch.nn.Module, *, trainable_only: bool = False) -> int:
    """Distinct parameters (tied weights counted once)."""
    seen, total = set(), 0
    for param in module.parameters():
        if trainable_only and not param.requires_grad:
            continue
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
    return total


def measured_flops(run: Callable[[], Any]) -> int:
    """Total FLOPs that `run()` executes (forward only unless it calls backward)."""
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    return int(counter.get_total_flops())


def format_count(n: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


# --- fits and fronts ------------------------------------------------------------------------

class PowerLaw(NamedTuple):
    """y = coefficient * x ** alpha, fitted by least squares in log-log space."""

    alpha: float
    coefficient: float
    r2: float

    def __call__(self, x):
        return self.coefficient * np.asarray(x, dtype=float) ** self.alpha


def power_law_fit(x: Sequence[float], y: Sequence[float]) -> PowerLaw:
    """Ordinary least squares of log y on log x; R^2 in log space. x and y must be positive."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"a power-law fit needs at least two (x, y) pairs, got {len(x)} and {len(y)}")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("a power-law fit needs positive x and y (fit -y for negative quantities)")
    lx, ly = np.log(x), np.log(y)
    alpha, intercept = np.polyfit(lx, ly, 1)
    residual = ly - (alpha * lx + intercept)
    spread = ((ly - ly.mean()) ** 2).sum()
    r2 = 1.0 - (residual ** 2).sum() / spread if spread > 0 else 1.0
    return PowerLaw(float(alpha), float(np.exp(intercept)), float(r2))


def pareto_front(points: Sequence[Sequence[float]], *, maximize: Sequence[bool] | None = None) -> list[int]:
    """Indices of the points no other point dominates (better or equal in every objective and
    strictly better in one). Objectives are minimised unless `maximize[j]` is True."""
    values = np.asarray(points, dtype=float)
    if values.ndim != 2:
        raise ValueError("pareto_front expects a list of equal-length points")
    signs = np.where(np.asarray(maximize if maximize is not None else [False] * values.shape[1]), -1.0, 1.0)
    costs = values * signs
    front = []
    for i, cost in enumerate(costs):
        dominated = ((costs <= cost).all(axis=1) & (costs < cost).any(axis=1)).any()
        if not dominated:
            front.append(i)
    return front
