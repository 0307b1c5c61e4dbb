"""Images as fields over [-1, 1]^2: scikit-learn's digits (grey) and procedural RGB shapes.

Both are defined at any resolution: digits by bilinear interpolation of the 8x8 originals,
shapes by rendering their analytic outlines, so samples can be compared at unseen resolutions.
"""
from __future__ import annotations

import gin
import numpy as np

from engine.errors import ConfigError
from tasks.fields.sources.base import FieldSource, cell_centres, split_rng
from tasks.images.sources.digits import digits
from tasks.images.sources.shapes import COLOR_NAMES, SHAPES, Scene, render as render_scene
from tasks.images.sources.transforms import resize


class _ImageFields(FieldSource):
    """Fields on a size x size pixel grid (pixel centres), values = pixels * 2 - 1."""

    coord_dim = 2
    layout = "grid2d"

    def __init__(self, *, size: int, **pool) -> None:
        super().__init__(**pool)
        self.train_resolution = self.check_resolution(size)

    def coordinates(self, resolution: int) -> np.ndarray:
        # (row, column) order, rows top to bottom: point i of the grid is pixel (i // r, i % r).
        return cell_centres(self.check_resolution(resolution), 2)

    @staticmethod
    def _as_fields(images: np.ndarray) -> np.ndarray:
        """(n, C, H, W) in [0, 1] -> (n, H * W, C) in [-1, 1]."""
        n, c = images.shape[:2]
        return (np.moveaxis(images, 1, -1).reshape(n, -1, c) * 2 - 1).astype(np.float32)

    def render(self, values: np.ndarray, resolution: int) -> np.ndarray:
        n = len(values)
        return np.clip((values.reshape(n, resolution, resolution, self.signal_dim) + 1) / 2, 0, 1)


@gin.configurable
class DigitFields(_ImageFields):
    """scikit-learn's handwritten digits as grey fields; labels = digits. Training uses the train
    half; the test half is dealt in turn to validation, eval and holdout (every third digit)."""

    signal_dim = 1
    num_classes = 10

    def __init__(self, *, size: int = 16) -> None:
        super().__init__(size=size)

    def key(self) -> tuple:
        return (type(self).__name__, self.train_resolution)

    def _parameters(self, split):
        images, labels = digits("train" if split == "train" else "test", size=8)
        if split != "train":
            third = np.arange(len(labels)) % 3 == ("validation", "eval", "holdout").index(split)
            images, labels = images[third], labels[third]
        self.sizes[split] = len(labels)
        return images, labels

    def _values(self, images, resolution):
        return self._as_fields(resize(images, resolution) if resolution != 8 else images)


@gin.configurable
class ShapeFields(_ImageFields):
    """One solid shape per field on black: kinds from `shapes`, one of the first `colors` palette
    colours, a random centre and half-size in `scale` (fractions of the width). Label = kind x colour.
    """

    signal_dim = 3

    def __init__(self, *, size: int = 32, shapes: tuple[str, ...] = ("circle", "square", "ring"), colors: int = 4,
                 scale: tuple[float, float] = (0.2, 0.35), seed: int = 0, train_fields: int = 2000,
                 eval_fields: int = 500,
                 validation_fields: int = 500, holdout_fields: int = 500) -> None:
        super().__init__(size=size, seed=seed, train_fields=train_fields, eval_fields=eval_fields,
                         validation_fields=validation_fields, holdout_fields=holdout_fields)
        unknown = [s for s in shapes if s not in SHAPES]
        if unknown or not shapes:
            raise ConfigError(f"ShapeFields.shapes must be names from {SHAPES}, got {shapes!r}")
        if not 1 <= colors <= len(COLOR_NAMES):
            raise ConfigError(f"ShapeFields.colors must be in [1, {len(COLOR_NAMES)}], got {colors!r}")
        if not 0 < scale[0] <= scale[1] < 0.5:
            raise ConfigError(f"ShapeFields.scale must be (low, high) with 0 < low <= high < 0.5, got {scale!r}")
        self.shapes = tuple(shapes)
        self.colors = colors
        self.scale = tuple(scale)
        self.num_classes = len(self.shapes) * colors

    def key(self) -> tuple:
        return super().key() + (self.shapes, self.colors, self.scale)

    def _parameters(self, split):
        rng = split_rng(self.seed, split)
        n = self.sizes[split]
        kind = rng.integers(0, len(self.shapes), size=n)
        colour = rng.integers(0, self.colors, size=n)
        half = rng.uniform(*self.scale, size=n)
        x, y = rng.uniform(half, 1 - half), rng.uniform(half, 1 - half)
        shape_index = np.array([SHAPES.index(self.shapes[k]) for k in kind])
        scene = Scene(shape=shape_index[:, None], color=colour[:, None], texture=np.zeros((n, 1), dtype=np.int64),
                      x=x[:, None], y=y[:, None], scale=half[:, None], count=np.ones(n, dtype=np.int64))
        return scene, kind * self.colors + colour

    def _values(self, scene, resolution):
        return self._as_fields(render_scene(scene, resolution))
