"""Generative metrics: KID, k-NN precision/recall, Chamfer COV/MMD and nearest-sample distance
behave as their definitions say on cases with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from tasks.common import generative_metrics as gm


def test_kid_is_near_zero_for_one_law_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((400, 8)), rng.standard_normal((400, 8))
    same = gm.kernel_inception_distance(a, b)
    shifted = gm.kernel_inception_distance(a, b + 1.0)
    assert abs(same) < 0.05 and shifted > 1.0
    assert gm.kernel_inception_distance(a, b + 2.0) > shifted


def test_precision_recall_separate_fidelity_from_diversity():
    rng = np.random.default_rng(1)
    real = rng.standard_normal((300, 4))
    assert gm.precision_recall(real, real.copy()) == (1.0, 1.0)
    collapsed = real[:10].repeat(30, axis=0) + 1e-3 * rng.standard_normal((300, 4))  # few modes, all real
    precision, recall = gm.precision_recall(real, collapsed)
    assert precision > 0.95 and recall < 0.2
    far = real + 20.0
    assert gm.precision_recall(real, far) == (0.0, 0.0)


def test_chamfer_coverage_and_mmd_on_known_sets():
    square = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    moved = square + [0.0, 0.0, 0.5]
    d = gm.chamfer_distances([square, moved], [square, moved])
    assert d[0, 0] == 0 and d[1, 1] == 0 and d[0, 1] == pytest.approx(2 * 0.25) and d[0, 1] == d[1, 0]
    assert gm.chamfer_distances([np.zeros((0, 3))], [square])[0, 0] == 8.0  # empty sets are far away
    reference = [square + [0, 0, k] for k in range(4)]
    assert gm.coverage_and_mmd(reference, reference) == (1.0, 0.0)
    cov, mmd = gm.coverage_and_mmd([reference[0]] * 4, reference)  # mode collapse: one shape only
    assert cov == 0.25 and mmd == pytest.approx(2 * (0 + 1 + 4 + 9) / 4)


def test_nearest_distance_is_zero_for_copies_and_rms_otherwise():
    pool = np.random.default_rng(2).standard_normal((50, 6, 2))
    assert np.allclose(gm.nearest_distance(pool[:5], pool), 0.0, atol=1e-6)
    assert gm.nearest_distance(np.full((1, 6, 2), 100.0), np.zeros((3, 6, 2)))[0] == pytest.approx(100.0)


def test_class_histogram_distance_is_total_variation():
    assert gm.class_histogram_distance(np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0]), 2) == 0.0
    assert gm.class_histogram_distance(np.array([0, 0]), np.array([1, 1]), 3) == 1.0
