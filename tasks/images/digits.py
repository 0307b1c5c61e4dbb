"""Digit classification on scikit-learn's bundled digits, at any image size (shipped data, no download)."""
from __future__ import annotations

import gin

from engine.errors import require_int

from tasks.common.arrays import ArrayClassificationTask
from tasks.images.sources.digits import digits


@gin.configurable
class DigitsClassification(ArrayClassificationTask):
    """10-way classification of 8x8 digits upsampled to `image_size`; splits 'train' and 'eval', and
    'validation' (the last `validation_size` training images, held out of 'train') for tuning
    without reading the test split."""

    def __init__(self, *, image_size: int = 8, validation_size: int = 0) -> None:
        super().__init__()
        for split, part in (("train", "train"), ("eval", "test")):
            images, labels = digits(part, size=image_size)
            self.splits[split] = {"image": images, "label": labels}
        train = self.splits["train"]
        held = require_int(validation_size, "DigitsClassification.validation_size", low=0,
                           high=len(train["label"]) - 1)
        if held:
            cut = len(train["label"]) - held
            self.splits["validation"] = {key: value[cut:] for key, value in train.items()}
            self.splits["train"] = {key: value[:cut] for key, value in train.items()}
        self.num_classes = 10
