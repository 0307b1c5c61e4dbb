"""The saturation law of Abnar et al. 2022 and how it is checked: the upper convex hull of
(upstream, downstream) accuracies, the fit e_DS = k * e_US^alpha + e_IR on it (Eq. 1), and its
error on held-out models. Used by the saturation reproduction and its plots."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np


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
    # Why the fit says nothing about saturation ("" when it does): the power-law term is flat over
    # the data (k ~ 0: e_IR is then just the plateau of the points), or alpha sits at its bound.
    degenerate: str = ""

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
    return SaturationFit(k, alpha, e_ir, float(np.sqrt(np.mean(best.fun ** 2))),
                         degenerate_reason(e_us, k, alpha, min_alpha, max_alpha))


#: A fitted power-law term that moves the predicted error by less than this over the data is flat.
FLAT_SPAN = 0.005


def degenerate_reason(e_us: np.ndarray, k: float, alpha: float, min_alpha: float, max_alpha: float) -> str:
    """'' for a fit that describes a trend; otherwise why it does not (see SaturationFit.degenerate)."""
    reasons = []
    span = k * float(np.ptp(e_us ** alpha))
    if span < FLAT_SPAN:
        reasons.append(f"k ~ 0 (the k e_US^alpha term moves the error by {span:.4f} over the data: flat, no trend)")
    for bound in (min_alpha, max_alpha):  # e_IR = 0 is a claim (no saturation), not a failure
        if abs(alpha - bound) <= 1e-3 * max(1.0, bound):
            reasons.append(f"alpha at its bound {bound:g}")
    return "; ".join(reasons)


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
