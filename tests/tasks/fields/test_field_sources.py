"""Field sources: images, occupancy and sphere fields are defined at any resolution; spherical
harmonics are orthonormal; graph-Laplacian coordinates show the sphere's spectrum and agree
across samplings once their sign and basis ambiguity is fixed."""
from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ConfigError
from tasks.fields.sources.images import DigitFields, ShapeFields
from tasks.fields.sources.laplacian import align_basis, laplacian_eigenvectors, nearest_indices
from tasks.fields.sources.occupancy import OccupancyFields, Solids, inside, random_rotations
from tasks.fields.sources.sphere import DEGREE_COLUMNS, SphereFields, fibonacci_sphere, real_harmonics
from tasks.images.sources.digits import digits


def test_digit_fields_are_the_digits_on_pixel_centres():
    source = DigitFields(size=16)
    images, labels = digits("train")
    assert np.allclose(source.fields("train", 8)[:, :, 0], images.reshape(len(images), 64) * 2 - 1)
    assert np.array_equal(source.pool("train").labels, labels) and source.pool("train").values.shape[1:] == (256, 1)
    coords = source.coordinates(4)
    assert np.allclose(coords[1], [-0.75, -0.25])  # point i is pixel (i // 4, i % 4): row, then column


def test_shape_fields_are_solid_colours_on_black_and_pools_are_seeded():
    source = ShapeFields(size=16, train_fields=20, eval_fields=10)
    pool = source.pool("train")
    assert pool.values.shape == (20, 256, 3) and pool.values.min() == -1.0
    assert np.array_equal(ShapeFields(size=16, train_fields=20, eval_fields=10).pool("train").values, pool.values)
    assert not np.array_equal(source.fields("eval", 16)[:10], pool.values[:10])
    assert source.fields("train", 48).shape == (20, 48 * 48, 3)
    with pytest.raises(ConfigError, match="shapes"):
        ShapeFields(shapes=("hexagon",))


def test_occupancy_fills_the_analytic_volume_at_any_resolution():
    rotation = random_rotations(np.random.default_rng(0), 50)
    assert np.allclose(rotation @ rotation.transpose(0, 2, 1), np.eye(3), atol=1e-10)
    assert np.allclose(np.linalg.det(rotation), 1.0)
    source = OccupancyFields(size=16, train_fields=4, eval_fields=4)
    sphere = Solids(kind=np.array([0]), centre=np.zeros((1, 3)), rotation=rotation[:1], size=np.full((1, 3), 0.6))
    fraction = inside(sphere, source.coordinates(40)).mean()
    assert fraction == pytest.approx(4 / 3 * np.pi * 0.6 ** 3 / 8, rel=0.03)
    values = source.pool("train").values
    assert set(np.unique(values)) == {-1.0, 1.0} and values.shape == (4, 16 ** 3, 1)
    assert source.render(values, 16).shape == (4, 16, 16, 1)
    clouds = source.point_clouds(values, 16)
    assert all(len(c) == int((v > 0).sum()) for c, v in zip(clouds, values))


def test_real_harmonics_are_orthonormal_on_the_sphere():
    harmonics = real_harmonics(fibonacci_sphere(6000))
    gram = harmonics.T @ harmonics / len(harmonics)
    assert np.abs(gram - np.eye(16)).max() < 1e-3


def test_graph_laplacian_spectrum_of_the_sphere_groups_as_1_3_5_7():
    values, vectors = laplacian_eigenvectors(fibonacci_sphere(384), 16, neighbours=10)
    assert abs(values[0]) < 1e-8 and np.allclose(np.abs(vectors[:, 0]), 1.0)  # constant, unit RMS
    groups = [values[c] for l, c in DEGREE_COLUMNS.items() if l > 0]
    for lower, upper in zip(groups, groups[1:]):
        assert lower.max() < upper.min()  # the groups do not interleave
    base = groups[0].mean() / 2  # eigenvalues ~ l (l + 1), as for the Laplace-Beltrami operator
    for l, group in enumerate(groups, start=1):
        assert group.max() / group.min() < 1.1
        assert group.mean() / base == pytest.approx(l * (l + 1), rel=0.1)


def test_eigen_coordinates_fix_sign_and_basis_and_agree_across_samplings():
    points = fibonacci_sphere(384)
    _, reference = laplacian_eigenvectors(points, 16)
    rotation, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((16, 16)))
    assert np.allclose(align_basis(reference @ rotation, points, reference, points), reference, atol=1e-8)
    source = SphereFields(points=384, coordinates="eigen", train_fields=4, eval_fields=4)
    coarse, fine = source.coordinates(384), source.coordinates(768)
    assert coarse.shape == (384, 16) and fine.shape == (768, 16)
    near = nearest_indices(source.points(384), source.points(768))
    agreement = [np.corrcoef(coarse[:, k], fine[near, k])[0, 1] for k in range(1, 16)]
    assert min(agreement) > 0.9 and np.mean(agreement) > 0.97  # nearest-point reading blurs degree 3 a little


def test_sphere_fields_follow_their_label_degree():
    source = SphereFields(points=384, train_fields=60, eval_fields=4)
    pool = source.pool("train")
    assert pool.values.shape == (60, 384, 1) and np.abs(pool.values).max() <= 1
    harmonics = real_harmonics(source.points(384))
    coefficients = np.linalg.lstsq(harmonics, pool.values[:, :, 0].T, rcond=None)[0].T  # (60, 16)
    for field, label in zip(coefficients, pool.labels):
        energy = {l: np.sum(field[c] ** 2) for l, c in DEGREE_COLUMNS.items() if l in (1, 3)}
        degree = label + 1
        if degree in energy:  # degree-1 and degree-3 anomalies are the only energy at their degree
            assert energy[degree] > 0.01 and all(e < 1e-3 for l, e in energy.items() if l != degree)
    assert source.render(pool.values[:2], 384).shape == (2, 32, 64, 3)


def test_validation_test_and_holdout_pools_share_no_field():
    source = ShapeFields(size=8, train_fields=40, eval_fields=30, validation_fields=20, holdout_fields=25)
    pools = {split: source.pool(split).values.reshape(len(source.pool(split)), -1)
             for split in ("train", "validation", "eval", "holdout")}
    assert [len(p) for p in pools.values()] == [40, 20, 30, 25]
    for a in pools:
        for b in pools:
            if a < b:  # shapes on an 8x8 grid can coincide by chance; whole pools never do
                shared = sum(any(np.array_equal(x, y) for y in pools[b]) for x in pools[a])
                assert shared < 0.2 * min(len(pools[a]), len(pools[b])), (a, b)
    digits_source = DigitFields(size=8)
    held = [digits_source.pool(split) for split in ("validation", "eval", "holdout")]
    assert sum(len(p) for p in held) == len(digits("test")[1])  # the test half, dealt in thirds
    with pytest.raises(ConfigError, match="splits"):
        source.pool("test")
