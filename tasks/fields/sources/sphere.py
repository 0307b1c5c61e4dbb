"""Fields on the sphere: "temperature" maps made of low-degree real spherical harmonics, sampled
on Fibonacci points, with xyz coordinates or MDF-style intrinsic (graph-Laplacian) coordinates.

A field is cold poles and a warm equator (-a Y_20) plus one anomaly of degree l in {1, 2, 3}
in a random orientation; the label is l - 1. Maps are drawn in an equirectangular projection.
"""
from __future__ import annotations

import math

import gin
import numpy as np

from engine.errors import ConfigError
from tasks.fields.sources.base import FieldSource, split_rng
from tasks.fields.sources.laplacian import align_basis, laplacian_eigenvectors, nearest_indices

COORDINATES = ("xyz", "eigen")
#: the columns of `real_harmonics` that belong to each degree l
DEGREE_COLUMNS = {0: slice(0, 1), 1: slice(1, 4), 2: slice(4, 9), 3: slice(9, 16)}


def fibonacci_sphere(count: int) -> np.ndarray:
    """`count` near-uniform unit vectors (count, 3) on a golden-angle spiral."""
    i = np.arange(count, dtype=np.float64) + 0.5
    z = 1 - 2 * i / count
    radius = np.sqrt(1 - z * z)
    phi = i * math.pi * (3 - math.sqrt(5))
    return np.stack([radius * np.cos(phi), radius * np.sin(phi), z], axis=-1)


def real_harmonics(points: np.ndarray) -> np.ndarray:
    """Real spherical harmonics Y_lm, l <= 3, as Cartesian polynomials of unit vectors, scaled
    to unit mean square over the sphere: (N, 16) with columns l = 0 | 1 x 3 | 2 x 5 | 3 x 7."""
    x, y, z = (np.asarray(points, dtype=np.float64)[:, k] for k in range(3))
    pi = math.pi
    columns = [
        0.5 * math.sqrt(1 / pi) * np.ones_like(x),
        math.sqrt(3 / (4 * pi)) * y, math.sqrt(3 / (4 * pi)) * z, math.sqrt(3 / (4 * pi)) * x,
        0.5 * math.sqrt(15 / pi) * x * y, 0.5 * math.sqrt(15 / pi) * y * z,
        0.25 * math.sqrt(5 / pi) * (3 * z * z - 1), 0.5 * math.sqrt(15 / pi) * x * z,
        0.25 * math.sqrt(15 / pi) * (x * x - y * y),
        0.25 * math.sqrt(35 / (2 * pi)) * y * (3 * x * x - y * y), 0.5 * math.sqrt(105 / pi) * x * y * z,
        0.25 * math.sqrt(21 / (2 * pi)) * y * (5 * z * z - 1), 0.25 * math.sqrt(7 / pi) * z * (5 * z * z - 3),
        0.25 * math.sqrt(21 / (2 * pi)) * x * (5 * z * z - 1), 0.25 * math.sqrt(105 / pi) * z * (x * x - y * y),
        0.25 * math.sqrt(35 / (2 * pi)) * x * (x * x - 3 * y * y),
    ]
    return np.stack(columns, axis=-1) * math.sqrt(4 * pi)


def equirectangular_directions(height: int, width: int) -> np.ndarray:
    """Unit vectors at the pixel centres of a latitude-longitude map (north up)."""
    lat = math.pi / 2 - (np.arange(height) + 0.5) / height * math.pi
    lon = (np.arange(width) + 0.5) / width * 2 * math.pi - math.pi
    lat, lon = np.meshgrid(lat, lon, indexing="ij")
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1).reshape(-1, 3)


@gin.configurable
class SphereFields(FieldSource):
    """Temperature-like fields on `points` Fibonacci points; resolution = number of points.

    `coordinates = 'eigen'` feeds the model the first `eigenvectors` graph-Laplacian
    eigenvectors (kNN graph, `neighbours`) instead of xyz, aligned to the training sampling.
    """

    signal_dim = 1
    num_classes = 3
    layout = "points"

    def __init__(self, *, points: int = 384, coordinates: str = "xyz", eigenvectors: int = 16, neighbours: int = 10,
                 scale: float = 0.35, seed: int = 0, train_fields: int = 2000, eval_fields: int = 500,
                 validation_fields: int = 500, holdout_fields: int = 500) -> None:
        super().__init__(seed=seed, train_fields=train_fields, eval_fields=eval_fields,
                         validation_fields=validation_fields, holdout_fields=holdout_fields)
        if coordinates not in COORDINATES:
            raise ConfigError(f"SphereFields.coordinates must be one of {COORDINATES}, got {coordinates!r}")
        if coordinates == "eigen" and not 1 <= eigenvectors < points:
            raise ConfigError(f"SphereFields.eigenvectors must be in [1, points), got {eigenvectors!r}")
        self.train_resolution = self.check_resolution(points)
        self.coordinate_kind = coordinates
        self.eigenvectors = eigenvectors
        self.neighbours = neighbours
        self.scale = scale
        self.coord_dim = 3 if coordinates == "xyz" else eigenvectors

    def key(self) -> tuple:
        return super().key() + (self.scale,)

    def points(self, resolution: int) -> np.ndarray:
        return fibonacci_sphere(self.check_resolution(resolution))

    def coordinates(self, resolution: int) -> np.ndarray:
        if self.coordinate_kind == "xyz":
            return self.points(resolution).astype(np.float32)
        return self._cached(("eigen", resolution), lambda: self._eigen_coordinates(resolution))

    def _eigen_coordinates(self, resolution: int) -> np.ndarray:
        _, vectors = laplacian_eigenvectors(self.points(resolution), self.eigenvectors, self.neighbours)
        if resolution != self.train_resolution:
            reference = self.coordinates(self.train_resolution)
            vectors = align_basis(vectors, self.points(resolution), reference, self.points(self.train_resolution))
        return vectors.astype(np.float32)

    def default_eval_resolutions(self) -> tuple[int, ...]:
        return (self.train_resolution, 4 * self.train_resolution)

    def describe(self, resolution: int) -> str:
        return f"{resolution}_points"

    def _parameters(self, split):
        rng = split_rng(self.seed, split)
        n = self.sizes[split]
        degree = rng.integers(1, 4, size=n)
        coefficients = np.zeros((n, 16))
        coefficients[:, 6] = -rng.uniform(0.5, 1.0, n)  # -a Y_20: cold poles, warm equator
        for l, columns in DEGREE_COLUMNS.items():
            rows = degree == l
            direction = rng.standard_normal((rows.sum(), 2 * l + 1))
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            coefficients[rows, columns] += direction * rng.uniform(0.6, 1.2, (rows.sum(), 1))
        return coefficients, degree - 1

    def _values(self, coefficients, resolution):
        values = self.scale * real_harmonics(self.points(resolution)) @ coefficients.T
        return np.clip(values.T, -1, 1).astype(np.float32)[..., None]

    def render(self, values: np.ndarray, resolution: int, height: int = 32) -> np.ndarray:
        """Equirectangular maps (n, height, 2 height, 3), each pixel from its nearest point."""
        from matplotlib import colormaps
        where = nearest_indices(equirectangular_directions(height, 2 * height), self.points(resolution))
        maps = values[:, where, 0].reshape(len(values), height, 2 * height)
        return colormaps["coolwarm"]((maps + 1) / 2)[..., :3].astype(np.float32)
