"""Parameter and FLOP counts for any model, and the fits scaling studies are read with.

FLOPs are counted on a real forward pass with `torch.utils.flop_counter` (matmuls,
convolutions, attention), so they hold for any model; a model may also expose an analytic
`flops_per_example()` which is then preferred. T5 shapes also have closed forms (below),
checked against both the published counts and the forward-pass count.
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


# --- T5 shapes: analytic parameters and FLOPs -------------------------------------------------
# T5 v1.0 ("bi_v1"): tied input/output embedding, ReLU FFN, no biases, RMS-norm scales, one
# relative-position table (buckets x heads) per stack. These reproduce the published counts
# (Base 222.9M, XXL 11,307M, ...) to within 0.1%; see tests/engine/test_scaling_analysis.py.

def t5_parameter_count(*, d_model: int, d_ff: int, d_kv: int, num_heads: int, encoder_layers: int,
                       decoder_layers: int, vocab_size: int = 32128, relative_buckets: int = 32) -> int:
    inner = num_heads * d_kv
    encoder = encoder_layers * (4 * d_model * inner + 2 * d_model * d_ff + 2 * d_model) + d_model
    decoder = decoder_layers * (8 * d_model * inner + 2 * d_model * d_ff + 3 * d_model) + d_model
    return vocab_size * d_model + encoder + decoder + 2 * relative_buckets * num_heads


def t5_flops_per_token(*, d_model: int, d_ff: int, d_kv: int, num_heads: int, encoder_layers: int,
                       decoder_layers: int, vocab_size: int = 32128, input_length: int = 512,
                       target_length: int = 114) -> tuple[float, float]:
    """Forward FLOPs (2 per multiply-add) of one encoder token and of one decoder token."""
    inner = num_heads * d_kv
    encoder = encoder_layers * (2 * (4 * d_model * inner + 2 * d_model * d_ff) + 4 * input_length * inner)
    decoder = (decoder_layers * (2 * (8 * d_model * inner + 2 * d_model * d_ff) + 4 * target_length * inner
                                 + 4 * input_length * inner) + 2 * d_model * vocab_size)
    return float(encoder), float(decoder)


def t5_forward_flops(*, input_length: int = 512, target_length: int = 114, **shape: int) -> float:
    """Forward FLOPs of one example: every encoder token plus every decoder token."""
    encoder, decoder = t5_flops_per_token(input_length=input_length, target_length=target_length, **shape)
    return input_length * encoder + target_length * decoder


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
