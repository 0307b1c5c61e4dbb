"""Digits on a larger canvas, tested out of distribution: translated and scaled test sets.

scikit-learn's 8x8 digits are pasted near the centre of a `canvas` x `canvas` image (a small
random jitter in training), as in Abnar et al.'s MNIST vs MNIST-C setting: a model with a
spatial inductive bias (a CNN) should keep its accuracy when the digit moves or grows; an MLP,
which never saw ink on the outer pixels, should not.

Splits: 'train' (jittered afresh every batch), 'eval' (test digits, jittered like training),
'translated' (test digits shifted up to `max_shift` pixels each way), 'scaled' (test digits
zoomed by a factor in `scale_range` about the centre).
"""
from __future__ import annotations

from typing import Any, Iterator

import gin
import numpy as np

from engine.data import Shard, batch_rng, device_of, generated_batches
from engine.errors import require, require_int
from tasks.common.arrays import ArrayClassificationTask, epoch_indices, ordered_batches
from tasks.common.calibration import evaluate_calibration
from tasks.images.sources.digits import digits
from tasks.images.sources.transforms import affine, place_on_canvas

DIGIT = 8  # scikit-learn's digits are 8 x 8


def centred_offsets(canvas: int, rng: np.random.Generator, n: int, max_shift: int) -> np.ndarray:
    """(n, 2) integer top-left corners: the centred position moved by up to `max_shift` per axis."""
    centre = (canvas - DIGIT) // 2
    return centre + rng.integers(-max_shift, max_shift + 1, size=(n, 2))


@gin.configurable
class DigitsOnCanvas(ArrayClassificationTask):
    """10-way digit classification on a canvas, evaluated on in-distribution, translated and scaled digits."""

    def __init__(self, *, canvas: int = 16, train_shift: int = 1, max_shift: int = 4,
                 scale_range: tuple[float, float] = (1.2, 1.4), calibration_bins: int = 10,
                 split_seed: int = 0) -> None:
        super().__init__()
        require_int(canvas, "DigitsOnCanvas.canvas", low=DIGIT)
        room = (canvas - DIGIT) // 2
        for name, value in (("train_shift", train_shift), ("max_shift", max_shift)):
            require_int(value, f"DigitsOnCanvas.{name}", low=0, high=room,
                        hint=f"so the digit stays on the {canvas}x{canvas} canvas")
        try:
            low, high = (float(v) for v in scale_range)
        except (TypeError, ValueError):
            low, high = -1.0, -1.0
        require(0 < low <= high and high * DIGIT <= canvas,
                f"DigitsOnCanvas.scale_range = {scale_range!r} must be (low, high) with 0 < low <= high and "
                f"high * {DIGIT} <= canvas ({canvas})")
        self.canvas, self.train_shift, self.max_shift = canvas, train_shift, max_shift
        self.scale_range = (low, high)
        self.calibration_bins = calibration_bins
        self.num_classes = 10
        self.input_dim = canvas * canvas
        self.train_digits, self.train_labels = digits("train", split_seed=split_seed)
        test_x, test_y = digits("test", split_seed=split_seed)
        # Fixed placements for evaluation; training batches draw a fresh jitter instead.
        for split, (images, labels, shift) in {"train": (self.train_digits, self.train_labels, train_shift),
                                               "eval": (test_x, test_y, train_shift),
                                               "translated": (test_x, test_y, max_shift)}.items():
            rng = batch_rng(split_seed, f"digits_canvas/{split}", 0)
            self.splits[split] = {"image": self._place(images, centred_offsets(canvas, rng, len(labels), shift)),
                                  "label": labels}
        rng = batch_rng(split_seed, "digits_canvas/scaled", 0)
        centred = self._place(test_x, centred_offsets(canvas, rng, len(test_y), 0))
        scales = rng.uniform(low, high, size=len(test_y))
        self.splits["scaled"] = {"image": affine(centred, scales=scales), "label": test_y}

    def _place(self, images: np.ndarray, top_left: np.ndarray) -> np.ndarray:
        return place_on_canvas(images, self.canvas, top_left)

    def batches(self, split: str, shard: Shard) -> Iterator[dict[str, Any]]:
        if split != "train":
            return super().batches(split, shard)

        def make(rng: np.random.Generator, size: int, index: int) -> dict[str, np.ndarray]:
            chosen = epoch_indices(len(self.train_labels), shard.seed, split, size, index)
            offsets = centred_offsets(self.canvas, rng, size, self.train_shift)
            return {"image": self._place(self.train_digits[chosen], offsets), "label": self.train_labels[chosen]}

        return generated_batches(make, split, shard)

    def evaluate(self, model, split, shard):
        metrics = super().evaluate(model, split, shard)
        metrics.update(evaluate_calibration(lambda batch: self.forward(model, batch),
                                            ordered_batches(self.arrays(split), shard), device_of(model),
                                            bins=self.calibration_bins))
        return metrics
