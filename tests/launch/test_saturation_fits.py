"""The saturation analysis: the upper convex hull (the frontier randomized mixtures of models
reach) and the fit e_DS = k * e_US^alpha + e_IR with its held-out prediction error."""
from __future__ import annotations

import numpy as np
import pytest

from launch.reproductions._saturation_fits import holdout_error, hull_points, saturation_fit, upper_convex_hull


def test_saturation_fit_recovers_its_parameters_from_noiseless_data():
    e_us = np.linspace(0.05, 0.8, 15)
    for k, alpha, e_ir in [(0.9, 1.3, 0.12), (0.5, 0.6, 0.3), (1.2, 2.5, 0.0)]:
        fit = saturation_fit(e_us, k * e_us ** alpha + e_ir)
        assert fit.k == pytest.approx(k, abs=1e-6) and fit.alpha == pytest.approx(alpha, abs=1e-6)
        assert fit.e_ir == pytest.approx(e_ir, abs=1e-6) and fit.rmse < 1e-9
        assert fit.saturation == pytest.approx(1 - e_ir, abs=1e-6)
        assert fit.degenerate == ""


def test_flat_data_is_a_plateau_not_a_step_to_zero_error():
    e_us = np.linspace(0.3, 0.9, 8)
    fit = saturation_fit(e_us, np.full(8, 0.6))
    assert fit.k == pytest.approx(0.0, abs=1e-6) and fit.e_ir == pytest.approx(0.6, abs=1e-6)
    assert fit.saturation == pytest.approx(0.4, abs=1e-6)
    assert fit.degenerate.startswith("k ~ 0")  # a plateau is not evidence of saturation


def test_a_fit_pinned_at_the_exponent_bound_is_degenerate():
    # Error that rises far more steeply than any exponent inside the bounds allows.
    e_us = np.linspace(0.2, 0.6, 6)
    fit = saturation_fit(e_us, 0.2 + 0.5 * (e_us / 0.6) ** 12, max_alpha=3.0)
    assert "alpha at its bound" in fit.degenerate


def test_saturation_fit_predicts_held_out_points_on_noisy_data():
    # The spec's synthetic study: noise that only ever adds downstream error, as models below the
    # frontier do. Parameters are poorly identified, but the frontier is predicted well.
    rng = np.random.default_rng(0)
    e_us = rng.uniform(0.15, 0.7, 400)
    e_ds = 0.9 * e_us ** 1.3 + 0.12 + np.abs(rng.normal(0, 0.05, 400))
    error = holdout_error(1 - e_us, 1 - e_ds, held_out_fraction=0.25)
    assert error.kept == 300 and error.held_out >= 1
    assert error.hull < 0.05 and error.all_points < 0.05
    # The hull fit describes the frontier: it lies below (in error) every point it was fitted near.
    hx, hy = hull_points(1 - e_us, 1 - e_ds)
    fit = saturation_fit(1 - hx, 1 - hy)
    assert fit.rmse < 0.02 and np.mean(fit(e_us) <= e_ds + 0.02) > 0.95


def test_upper_hull_is_concave_and_contains_every_mixture_of_its_points():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1, 60), rng.uniform(0, 1, 60)
    hull = upper_convex_hull(x, y)
    hx, hy = x[hull], y[hull]
    assert list(hx) == sorted(hx) and hx[0] == x.min() and hx[-1] == x.max()
    slopes = np.diff(hy) / np.diff(hx)
    assert (np.diff(slopes) < 0).all()  # strictly concave: collinear points are not vertices
    assert (y <= np.interp(x, hx, hy) + 1e-12).all()
    # Lemma 2.1: a classifier that follows model i with probability p_i scores sum p_i * acc_i
    # on both tasks. Simulate such mixtures of random pairs: they never rise above the hull.
    for _ in range(20):
        i, j = rng.choice(60, size=2, replace=False)
        p = rng.uniform()
        mx, my = p * x[i] + (1 - p) * x[j], p * y[i] + (1 - p) * y[j]
        assert my <= np.interp(mx, hx, hy) + 1e-12


def test_a_simulated_randomized_classifier_reaches_the_mixture_of_accuracies():
    rng = np.random.default_rng(2)
    n = 200_000
    correct_a = rng.uniform(size=(2, n)) < np.array([[0.9], [0.5]])  # (upstream, downstream) hits
    correct_b = rng.uniform(size=(2, n)) < np.array([[0.6], [0.8]])
    p = 0.3
    follow_a = rng.uniform(size=n) < p  # per example, which model answers
    mixed = np.where(follow_a, correct_a, correct_b).mean(axis=1)
    expected = p * correct_a.mean(axis=1) + (1 - p) * correct_b.mean(axis=1)
    assert np.allclose(mixed, expected, atol=0.005)


def test_hull_keeps_the_higher_of_equal_x_and_drops_collinear_points():
    x = [0.0, 0.5, 0.5, 1.0, 0.25]
    y = [0.0, 0.2, 0.6, 1.0, 0.25]
    assert upper_convex_hull(x, y) == [0, 2, 3]
    assert upper_convex_hull([0, 1, 2], [0, 1, 2]) == [0, 2]


def test_fits_refuse_what_they_cannot_fit():
    with pytest.raises(ValueError, match="at least three"):
        saturation_fit([0.2, 0.3], [0.4, 0.5])
    with pytest.raises(ValueError, match="must lie in"):
        saturation_fit([0.0, 0.3, 0.5], [0.4, 0.5, 0.6])
    with pytest.raises(ValueError, match="held_out_fraction"):
        holdout_error([0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], held_out_fraction=1.0)
