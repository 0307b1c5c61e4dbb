"""Power-law fits and Pareto fronts used by the scaling studies."""
from __future__ import annotations

import numpy as np
import pytest

from engine.analysis import pareto_front, power_law_fit


def test_power_law_fit_recovers_an_exact_power_law():
    x = np.geomspace(1e6, 1e12, 7)
    fit = power_law_fit(x, 3.5 * x ** -0.076)
    assert abs(fit.alpha + 0.076) < 1e-6 and abs(fit.coefficient - 3.5) < 1e-6 and fit.r2 == pytest.approx(1.0)
    assert np.allclose(fit(x), 3.5 * x ** -0.076)


def test_power_law_fit_r2_drops_with_noise_and_refuses_non_positive_values():
    x = np.geomspace(1, 1000, 30)
    noisy = 2 * x ** 0.5 * np.exp(np.random.default_rng(0).normal(0, 0.5, 30))
    fit = power_law_fit(x, noisy)
    assert 0.3 < fit.r2 < 0.99 and abs(fit.alpha - 0.5) < 0.15
    with pytest.raises(ValueError, match="positive"):
        power_law_fit([1, 2], [1, -2])


def test_pareto_front_keeps_exactly_the_non_dominated_points():
    # (FLOPs to minimise, accuracy to maximise)
    points = [(1, 0.5), (2, 0.7), (2, 0.6), (3, 0.7), (4, 0.9), (5, 0.85), (1, 0.5)]
    assert pareto_front(points, maximize=[False, True]) == [0, 1, 4, 6]
    assert pareto_front([(3, 3), (1, 2), (2, 1)]) == [1, 2]
