"""Shape x texture classification of procedurally rendered 32x32 images (a harder digits).

Each image holds one object with a random shape, texture, colour, size and position on a noisy
background; the label is (shape, texture), 24 classes. Colour, size and position are nuisances
the model must ignore, and stripes / checkers / dots need a finer look than a digit's outline.
Generated on the fly: batch i is a pure function of (seed, split, i).
"""
from __future__ import annotations

import gin
import numpy as np

from engine.data import generated_batches
from engine.errors import require
from engine.task import Task
from tasks.common.classification import classification_loss
from tasks.images.sources.shapes import SHAPES, TEXTURES, render, sample_scenes


@gin.configurable
class TexturedShapes(Task):
    """24-way (shape, texture) classification; images (3, image_size, image_size) in [0, 1]."""

    def __init__(self, *, image_size: int = 32, noise: float = 0.05, scale: tuple[float, float] = (0.22, 0.34),
                 eval_batches: int = 8) -> None:
        require(image_size >= 8, f"TexturedShapes.image_size must be >= 8, got {image_size}")
        require(noise >= 0, f"TexturedShapes.noise must be >= 0, got {noise}")
        lo, hi = scale
        require(0 < lo <= hi < 0.5, f"TexturedShapes.scale must satisfy 0 < low <= high < 0.5, got {scale!r}")
        self.image_size, self.noise, self.scale = image_size, noise, (lo, hi)
        self.eval_batches = eval_batches
        self.num_classes = len(SHAPES) * len(TEXTURES)

    def _make(self, rng: np.random.Generator, size: int, index: int) -> dict[str, np.ndarray]:
        scene = sample_scenes(rng, size, scale=self.scale)
        images = render(scene, self.image_size)
        if self.noise:
            images = np.clip(images + rng.normal(0.0, self.noise, images.shape).astype(np.float32), 0.0, 1.0)
        labels = scene.shape[:, 0] * len(TEXTURES) + scene.texture[:, 0]
        return {"image": images, "label": labels.astype(np.int64)}

    def batches(self, split, shard):
        return generated_batches(self._make, split, shard)

    def loss(self, model, batch):
        return classification_loss(model(batch["image"]), batch["label"])
