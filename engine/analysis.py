"""Parameter and FLOP counts for any model.

FLOPs are counted on a real forward pass with `torch.utils.flop_counter` (matmuls,
convolutions, attention), so they hold for any model; a model may also expose an analytic
`flops_per_example()` which is then preferred.
"""
from __future__ import annotations

from typing import Any, Callable

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
