"""The field-source contract: a finite, seeded pool of fields per split that can be evaluated at
the coordinates of any resolution, plus how to draw them for people and for a feature network.

A source never touches torch devices or ranks; it returns numpy arrays. Values are in [-1, 1].
"""
from __future__ import annotations

import abc
import dataclasses

import numpy as np

from engine.data import split_id
from engine.errors import ConfigError, require_int

#: `validation` chooses (budgets, context sizes, sweeps), `eval` is the test split, read once for a
#: table; `holdout` is scored as if it were samples (the oracle row: what a perfect generator gets).
SPLITS = ("train", "validation", "eval", "holdout")


@dataclasses.dataclass(frozen=True)
class FieldPool:
    """The fields of one split at the training resolution: values (n, points, channels), labels (n,)."""

    values: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def split_rng(seed: int, split: str) -> np.random.Generator:
    """The generator of one split's pool: train and eval pools never share a field."""
    return np.random.default_rng([seed, split_id(split), 7919])


def cell_centres(size: int, dims: int) -> np.ndarray:
    """(size**dims, dims) centres of a regular grid over [-1, 1]^dims, the first axis slowest."""
    axis = (2 * np.arange(size, dtype=np.float32) + 1) / size - 1
    mesh = np.meshgrid(*([axis] * dims), indexing="ij")
    return np.stack(mesh, axis=-1).reshape(-1, dims)


class FieldSource(abc.ABC):
    """Subclasses set the class attributes and implement `_parameters`/`_values`/`render`."""

    #: dimensions of a coordinate and of a signal value, and the number of label classes
    coord_dim: int = 2
    signal_dim: int = 1
    num_classes: int = 1
    #: what the feature network sees: 'grid2d' (C, H, W), 'grid3d' (C, D, H, W) or 'points'
    layout: str = "grid2d"
    #: the resolution fields are trained at (a grid side, or a number of points)
    train_resolution: int = 16

    def __init__(self, *, seed: int = 0, train_fields: int = 2000, eval_fields: int = 500,
                 validation_fields: int = 500, holdout_fields: int = 500) -> None:
        self.sizes = {"train": train_fields, "validation": validation_fields, "eval": eval_fields,
                      "holdout": holdout_fields}
        for split, value in self.sizes.items():
            require_int(value, f"{type(self).__name__}.{split}_fields", low=1)
        self.seed = seed
        self._cache: dict[tuple, object] = {}

    def _cached(self, key: tuple, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # --- what subclasses provide -------------------------------------------------------------
    @abc.abstractmethod
    def coordinates(self, resolution: int) -> np.ndarray:
        """(points, coord_dim) float32 coordinates of a resolution (fixed order)."""

    @abc.abstractmethod
    def _parameters(self, split: str) -> tuple[object, np.ndarray]:
        """(whatever defines the split's fields, labels (n,)) drawn from `split_rng`."""

    @abc.abstractmethod
    def _values(self, parameters: object, resolution: int) -> np.ndarray:
        """(n, points, signal_dim) float32 values of the fields at a resolution."""

    @abc.abstractmethod
    def render(self, values: np.ndarray, resolution: int) -> np.ndarray:
        """(n, H, W, 1 or 3) pictures in [0, 1] of fields given at `resolution`."""

    # --- shared behaviour ----------------------------------------------------------------------
    def key(self) -> tuple:
        """What identifies this source's data (to cache what is derived from it)."""
        return (type(self).__name__, self.seed, *(self.sizes[split] for split in SPLITS), self.train_resolution)

    def check_resolution(self, resolution: int) -> int:
        return require_int(resolution, f"{type(self).__name__}: a resolution", low=2)

    def check_split(self, split: str) -> str:
        if split not in SPLITS:
            raise ConfigError(f"{type(self).__name__} has splits {SPLITS}, not {split!r}")
        return split

    def _split(self, split: str) -> tuple[object, np.ndarray]:
        return self._cached(("split", split), lambda: self._parameters(self.check_split(split)))

    def fields(self, split: str, resolution: int) -> np.ndarray:
        """Every field of `split` at `resolution`: (n, points, signal_dim)."""
        return self._values(self._split(split)[0], self.check_resolution(resolution))

    def pool(self, split: str) -> FieldPool:
        """The split at the training resolution (computed once)."""
        def make() -> FieldPool:
            parameters, labels = self._split(split)
            values = self._values(parameters, self.train_resolution).astype(np.float32)
            return FieldPool(values=values, labels=np.asarray(labels, dtype=np.int64))
        return self._cached(("pool", split), make)

    def default_eval_resolutions(self) -> tuple[int, ...]:
        """The training resolution and one never seen in training."""
        return (self.train_resolution, 2 * self.train_resolution)

    def describe(self, resolution: int) -> str:
        """A resolution in words, for summary names."""
        return f"{resolution}x{resolution}"

    def finalize(self, values: np.ndarray) -> np.ndarray:
        """Map raw samples into the data's value set (here: clip into [-1, 1])."""
        return np.clip(values, -1.0, 1.0)

    def feature_input(self, values: np.ndarray) -> np.ndarray:
        """Fields at the training resolution arranged for the feature network."""
        n = len(values)
        if self.layout == "points":
            return values.reshape(n, -1)
        side = self.train_resolution
        spatial = (side, side) if self.layout == "grid2d" else (side, side, side)
        return np.moveaxis(values.reshape(n, *spatial, self.signal_dim), -1, 1)

    def point_clouds(self, values: np.ndarray, resolution: int) -> list[np.ndarray] | None:
        """Surface-free point sets for Chamfer metrics (3D sources only)."""
        return None
