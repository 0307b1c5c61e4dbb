"""3D occupancy fields over [-1, 1]^3: procedural spheres, boxes and tori with random size and pose.

Each shape is an analytic inside-test, so a field can be evaluated on any grid; +1 inside,
-1 outside. Drawn as depth maps seen from above; compared as point sets of occupied voxels.
"""
from __future__ import annotations

import dataclasses

import gin
import numpy as np

from tasks.fields.sources.base import FieldSource, cell_centres, split_rng

KINDS = ("sphere", "box", "torus")


@dataclasses.dataclass(frozen=True)
class Solids:
    """Per field: kind index, centre (3,), rotation (3, 3) and size parameters (3,)."""

    kind: np.ndarray
    centre: np.ndarray
    rotation: np.ndarray
    size: np.ndarray


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform random rotations (n, 3, 3) from normalised quaternions."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], axis=1)


def inside(solids: Solids, points: np.ndarray) -> np.ndarray:
    """(n, points) booleans: which points lie inside each solid."""
    offset = (points[None] - solids.centre[:, None]).astype(np.float32)
    rotation = solids.rotation.astype(np.float32)
    # local = R^T (p - c) for every point, as three broadcast multiply-adds (faster than matmul here)
    local = sum(offset[..., j:j + 1] * rotation[:, None, j, :] for j in range(3))
    size = solids.size[:, None, :].astype(np.float32)
    out = np.zeros(offset.shape[:2], dtype=bool)
    for kind in range(len(KINDS)):
        rows = solids.kind == kind
        if not rows.any():
            continue
        p, r = local[rows], size[rows]
        if KINDS[kind] == "sphere":
            out[rows] = (p * p).sum(-1) <= r[..., 0] ** 2
        elif KINDS[kind] == "box":
            out[rows] = (np.abs(p) <= r).all(-1)
        else:
            ring = np.sqrt(p[..., 0] ** 2 + p[..., 1] ** 2) - r[..., 0]
            out[rows] = ring ** 2 + p[..., 2] ** 2 <= r[..., 1] ** 2
    return out


@gin.configurable
class OccupancyFields(FieldSource):
    """Spheres (radius 0.4-0.75), boxes (half-sides 0.25-0.6) and tori (radii 0.4-0.65 and
    0.15-0.3), rotated at random and centred within 0.2 of the origin; label = kind."""

    coord_dim = 3
    signal_dim = 1
    num_classes = len(KINDS)
    layout = "grid3d"

    def __init__(self, *, size: int = 16, seed: int = 0, train_fields: int = 2000, eval_fields: int = 500,
                 validation_fields: int = 500, holdout_fields: int = 500) -> None:
        super().__init__(seed=seed, train_fields=train_fields, eval_fields=eval_fields,
                         validation_fields=validation_fields, holdout_fields=holdout_fields)
        self.train_resolution = self.check_resolution(size)

    def coordinates(self, resolution: int) -> np.ndarray:
        return cell_centres(self.check_resolution(resolution), 3)  # (x, y, z) with z fastest

    def _parameters(self, split):
        rng = split_rng(self.seed, split)
        n = self.sizes[split]
        kind = rng.integers(0, len(KINDS), size=n)
        size = rng.uniform(0.4, 0.75, (n, 3))
        size[kind == 1] = rng.uniform(0.25, 0.6, ((kind == 1).sum(), 3))
        torus = kind == 2
        size[torus, 0] = rng.uniform(0.4, 0.65, torus.sum())
        size[torus, 1] = rng.uniform(0.15, 0.3, torus.sum())
        solids = Solids(kind=kind, centre=rng.uniform(-0.2, 0.2, (n, 3)), rotation=random_rotations(rng, n), size=size)
        return solids, kind

    def _values(self, solids, resolution):
        points = self.coordinates(resolution)
        chunks = [np.where(inside(Solids(solids.kind[i:i + 256], solids.centre[i:i + 256],
                                         solids.rotation[i:i + 256], solids.size[i:i + 256]), points), 1.0, -1.0)
                  for i in range(0, len(solids.kind), 256)]
        return np.concatenate(chunks).astype(np.float32)[..., None]

    def describe(self, resolution: int) -> str:
        return f"{resolution}x{resolution}x{resolution}"

    def finalize(self, values: np.ndarray) -> np.ndarray:
        return np.where(values > 0, 1.0, -1.0).astype(np.float32)  # occupancy is binary

    def render(self, values: np.ndarray, resolution: int) -> np.ndarray:
        """Depth maps seen from +z: nearer surfaces brighter, shaded by the depth slope."""
        n = len(values)
        occupied = values.reshape(n, resolution, resolution, resolution) > 0
        hit = occupied.any(-1)
        first = np.argmax(occupied[..., ::-1], axis=-1)  # voxels from the top down to the first hit
        height = np.where(hit, 1 - first / resolution, 0.0)
        slope = np.gradient(height * resolution, axis=(1, 2))
        light = np.clip(0.75 + 0.25 * (-slope[0] - slope[1]) / np.sqrt(3), 0.3, 1.0)
        image = np.where(hit, (0.35 + 0.65 * height) * light, 0.0)
        return image[..., None].astype(np.float32)

    def point_clouds(self, values: np.ndarray, resolution: int) -> list[np.ndarray]:
        points = self.coordinates(resolution)
        return [points[v[:, 0] > 0] for v in values]
