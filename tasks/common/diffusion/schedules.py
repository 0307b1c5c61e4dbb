"""Noise schedules: the betas beta_1..beta_T of a discrete Gaussian diffusion.

Kept apart from the process itself so a new schedule is one function added to `BETA_SCHEDULES`.
Betas are float64: products of a thousand factors near 1 lose precision in float32.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from engine.errors import ConfigError, require_int


def linear_betas(steps: int, *, start: float = 1e-4, end: float = 0.02) -> torch.Tensor:
    """Ho et al.'s linear schedule. `start`/`end` are given for T = 1000 and rescaled by 1000/T,
    so a shorter chain still ends near pure noise (Nichol & Dhariwal's convention)."""
    scale = 1000.0 / steps
    return torch.linspace(scale * start, scale * end, steps, dtype=torch.float64).clamp(max=0.999)


def cosine_betas(steps: int, *, offset: float = 8e-3, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule: alpha_bar(t) = f(t) / f(0) with
    f(t) = cos(((t / T) + s) / (1 + s) * pi / 2)^2, betas clamped to `max_beta`."""
    grid = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((grid + offset) / (1 + offset) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(min=0.0, max=max_beta)


BETA_SCHEDULES: dict[str, Callable[[int], torch.Tensor]] = {"linear": linear_betas, "cosine": cosine_betas}


def make_betas(kind: str, steps: int) -> torch.Tensor:
    """The betas of schedule `kind` ('linear' or 'cosine') for a chain of `steps` steps."""
    if kind not in BETA_SCHEDULES:
        raise ConfigError(f"unknown noise schedule {kind!r}; choose from {sorted(BETA_SCHEDULES)}")
    require_int(steps, "a diffusion's number of steps", low=2)
    return BETA_SCHEDULES[kind](steps)
