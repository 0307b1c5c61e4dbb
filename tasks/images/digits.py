"""Digit classification on scikit-learn's bundled digits, at any image size (shipped data, no download)."""
from __future__ import annotations

import gin

from tasks.common.arrays import ArrayClassificationTask
from tasks.images.sources.digits import digits


@gin.configurable
class DigitsClassification(ArrayClassificationTask):
    """10-way classification of 8x8 digits upsampled to `image_size`; splits 'train' and 'eval'."""

    def __init__(self, *, image_size: int = 8) -> None:
        super().__init__()
        for split, part in (("train", "train"), ("eval", "test")):
            images, labels = digits(part, size=image_size)
            self.splits[split] = {"image": images, "label": labels}
        self.num_classes = 10
