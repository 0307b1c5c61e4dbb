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


# --- saturation of downstream accuracy (Abnar et al. 2022) -----------------------------------

def upper_convex_hull(x: Sequence[float], y: Sequence[float]) -> list[int]:
    """Indices of the vertices of the upper convex hull of the points, in increasing x.

    Every point lies on or below the hull's piecewise-linear curve, and its slopes decrease
    (it is concave). With accuracies (upstream x, downstream y) each point on it is reachable
    by a randomized mixture of two models (Lemma 2.1 of the paper), so the hull is the achievable
    frontier. Collinear middle points and duplicates are left out; among points with equal x
    only the highest can be a vertex.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(f"upper_convex_hull needs two equal-length 1-d sequences, got {x.shape} and {y.shape}")
    order = sorted(range(len(x)), key=lambda i: (x[i], -y[i]))
    hull: list[int] = []
    for i in order:
        if hull and x[hull[-1]] == x[i]:
            continue  # the higher point at this x is already in
        # Pop the last vertex while it lies on or below the segment from its predecessor to i.
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            cross = (x[b] - x[a]) * (y[i] - y[a]) - (y[b] - y[a]) * (x[i] - x[a])
            if cross >= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


class SaturationFit(NamedTuple):
    """e_DS = k * e_US ** alpha + e_IR (Eq. 1), errors e = 1 - accuracy; 1 - e_IR is the
    downstream accuracy predicted at 100% upstream accuracy (the saturation value)."""

    k: float
    alpha: float
    e_ir: float
    rmse: float

    def __call__(self, e_us):
        return self.k * np.asarray(e_us, dtype=float) ** self.alpha + self.e_ir

    @property
    def saturation(self) -> float:
        return 1.0 - self.e_ir


def saturation_fit(e_us: Sequence[float], e_ds: Sequence[float], *, min_alpha: float = 0.1,
                   max_alpha: float = 20.0) -> SaturationFit:
    """Bounded least squares of Eq. 1 on (upstream error, downstream error) pairs, with
    k >= 0, min_alpha <= alpha <= max_alpha, 0 <= e_IR <= 1, started from a grid of exponents so
    a poor local minimum is not taken for the fit. Fit it to hull points (see upper_convex_hull).

    alpha stays away from 0: there k * e_US^alpha is a constant for any e_US > 0 that jumps to 0
    at e_US = 0, so flat data would be "fitted" with e_IR = 0 (saturation at 100%) by a step no
    data supports; flat data is fitted by k = 0 and e_IR = the plateau instead."""
    from scipy.optimize import least_squares
    e_us, e_ds = np.asarray(e_us, dtype=float), np.asarray(e_ds, dtype=float)
    if e_us.shape != e_ds.shape or len(e_us) < 3:
        raise ValueError(f"a saturation fit needs at least three (e_US, e_DS) pairs, got {len(e_us)}")
    if (e_us <= 0).any() or (e_us > 1).any() or (e_ds < 0).any() or (e_ds > 1).any():
        raise ValueError("errors must lie in (0, 1] for e_US and [0, 1] for e_DS")
    if not 0 < min_alpha < max_alpha:
        raise ValueError(f"need 0 < min_alpha < max_alpha, got {min_alpha} and {max_alpha}")

    def residual(params: np.ndarray) -> np.ndarray:
        k, alpha, e_ir = params
        return k * e_us ** alpha + e_ir - e_ds

    best = None
    for alpha0 in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0):
        alpha0 = min(max(alpha0, min_alpha), max_alpha)
        base = e_us ** alpha0
        spread = base.max() - base.min()
        k0 = max((e_ds.max() - e_ds.min()) / spread, 1e-3) if spread > 0 else 1.0
        e_ir0 = float(np.clip(e_ds.min() - k0 * base.min(), 0.0, 1.0))
        result = least_squares(residual, x0=[k0, alpha0, e_ir0], bounds=([0, min_alpha, 0], [np.inf, max_alpha, 1]),
                               xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=5000)
        if best is None or result.cost < best.cost:
            best = result
    k, alpha, e_ir = (float(v) for v in best.x)
    return SaturationFit(k, alpha, e_ir, float(np.sqrt(np.mean(best.fun ** 2))))


def hull_points(accuracy_us: Sequence[float], accuracy_ds: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The (upstream, downstream) accuracies of the upper-hull vertices, in increasing upstream accuracy."""
    us, ds = np.asarray(accuracy_us, dtype=float), np.asarray(accuracy_ds, dtype=float)
    index = upper_convex_hull(us, ds)
    return us[index], ds[index]


class HoldoutError(NamedTuple):
    """Mean absolute error of predicting the held-out frontier from fits on the other points."""

    hull: float       # Eq. 1 fitted to the hull of the kept points
    all_points: float  # Eq. 1 fitted to every kept point
    kept: int
    held_out: int


def holdout_error(accuracy_us: Sequence[float], accuracy_ds: Sequence[float], *,
                  held_out_fraction: float = 0.25) -> HoldoutError:
    """Hold out the models with the highest upstream accuracy (the paper's validation of Eq. 1):
    fit on the rest, predict the downstream accuracy of the held-out hull vertices (the frontier
    there, which is what the law describes), and report the mean absolute error."""
    us, ds = np.asarray(accuracy_us, dtype=float), np.asarray(accuracy_ds, dtype=float)
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    held = max(1, int(round(held_out_fraction * len(us))))
    order = np.argsort(us, kind="stable")
    kept, out = order[:-held], order[-held:]
    hull_all = set(upper_convex_hull(us, ds))
    targets = [i for i in out if i in hull_all] or list(out)
    kx, ky = hull_points(us[kept], ds[kept])
    on_hull = saturation_fit(1 - kx, 1 - ky)
    on_all = saturation_fit(1 - us[kept], 1 - ds[kept])
    truth = 1 - ds[targets]
    return HoldoutError(hull=float(np.mean(np.abs(on_hull(1 - us[targets]) - truth))),
                        all_points=float(np.mean(np.abs(on_all(1 - us[targets]) - truth))),
                        kept=len(kept), held_out=len(targets))
