"""Digits on a larger canvas, tested out of distribution: translated and scaled test sets.

scikit-learn's 8x8 digits are pasted near the centre of a `canvas` x `canvas` image (a small
random jitter in training), as in Abnar et al.'s MNIST vs MNIST-C setting: a model with a
spatial inductive bias (a CNN) should keep its accuracy when the digit moves or grows; an MLP,
which never saw ink on the outer pixels, should not.

Splits: 'train' (jittered afresh every batch), 'eval' (test digits, jittered like training),
'translated' (test digits shifted up to `max_shift` pixels each way), 'scaled' (test digits
zoomed by a factor in `scale_range` about the centre).

The covered bed (gin/kd/digits_covered.gin) places training digits only on a coarse lattice of
offsets (`train_step`) that still inks every canvas pixel, and translates the test digits to the
offsets training never uses (`unseen_shifts`): the shifted digits ink only pixels the training
digits ink, so an MLP has weights a teacher's outputs could shape. `validation_size` holds test
digits out as 'translated_validation' (placed like 'translated') for model selection;
`ink_outside_training` measures how much test ink falls where training never puts any.
"""
from __future__ import annotations

import itertools
from typing import Any, Iterator

import gin
import numpy as np

from engine.data import Shard, batch_rng, device_of, generated_batches
from engine.errors import require, require_int
from tasks.adaptation.domain_shift import split_off
from tasks.common.arrays import ArrayClassificationTask, epoch_indices, ordered_batches
from tasks.common.calibration import evaluate_calibration
from tasks.images.sources.digits import digits
from tasks.images.sources.transforms import affine, place_on_canvas

DIGIT = 8  # scikit-learn's digits are 8 x 8
VALIDATION = "translated_validation"


def centred_offsets(canvas: int, rng: np.random.Generator, n: int, max_shift: int, step: int = 1) -> np.ndarray:
    """(n, 2) integer top-left corners: the centred position moved per axis by a multiple of
    `step` of at most `max_shift`."""
    centre, reach = (canvas - DIGIT) // 2, max_shift // step
    return centre + step * rng.integers(-reach, reach + 1, size=(n, 2))


@gin.configurable
class DigitsOnCanvas(ArrayClassificationTask):
    """10-way digit classification on a canvas, evaluated on in-distribution, translated and scaled digits.

    train_step: training (and 'eval') offsets per axis are the multiples of it within
        +-train_shift (1: every offset).
    unseen_shifts: 'translated' offsets are drawn uniformly from the (row, col) offsets within
        +-max_shift that training never uses, instead of from all of them.
    translated_copies: each translated test digit appears this many times, at independent offsets.
    validation_size: test digits held out as 'translated_validation' (placed like 'translated'),
        disjoint from every test split; 0: no validation split.
    """

    def __init__(self, *, canvas: int = 16, train_shift: int = 1, max_shift: int = 4,
                 scale_range: tuple[float, float] = (1.2, 1.4), calibration_bins: int = 10,
                 split_seed: int = 0, train_step: int = 1, unseen_shifts: bool = False,
                 translated_copies: int = 1, validation_size: int = 0) -> None:
        super().__init__()
        require_int(canvas, "DigitsOnCanvas.canvas", low=DIGIT)
        room = (canvas - DIGIT) // 2
        for name, value in (("train_shift", train_shift), ("max_shift", max_shift)):
            require_int(value, f"DigitsOnCanvas.{name}", low=0, high=room,
                        hint=f"so the digit stays on the {canvas}x{canvas} canvas")
        require_int(train_step, "DigitsOnCanvas.train_step", low=1)
        require_int(translated_copies, "DigitsOnCanvas.translated_copies", low=1)
        require_int(validation_size, "DigitsOnCanvas.validation_size", low=0)
        require(isinstance(unseen_shifts, bool), f"DigitsOnCanvas.unseen_shifts must be True or False, got "
                f"{unseen_shifts!r}")
        try:
            low, high = (float(v) for v in scale_range)
        except (TypeError, ValueError):
            low, high = -1.0, -1.0
        require(0 < low <= high and high * DIGIT <= canvas,
                f"DigitsOnCanvas.scale_range = {scale_range!r} must be (low, high) with 0 < low <= high and "
                f"high * {DIGIT} <= canvas ({canvas})")
        self.canvas, self.train_shift, self.max_shift, self.train_step = canvas, train_shift, max_shift, train_step
        self.unseen_shifts, self.translated_copies = unseen_shifts, translated_copies
        self.scale_range = (low, high)
        self.calibration_bins = calibration_bins
        self.num_classes = 10
        self.input_dim = canvas * canvas
        if unseen_shifts:
            require(len(self.unseen_offsets()) > 0,
                    f"DigitsOnCanvas.unseen_shifts: every offset within +-{max_shift} is a training offset "
                    f"(train_shift {train_shift}, train_step {train_step}); raise max_shift or train_step")
        self.train_digits, self.train_labels = digits("train", split_seed=split_seed)
        test_x, test_y = digits("test", split_seed=split_seed)
        held_out = None
        if validation_size:
            require(validation_size < len(test_y), f"DigitsOnCanvas.validation_size must leave test digits: there "
                    f"are {len(test_y)}, got {validation_size}")
            # A stream of its own, so the test digits left are the same for every split below.
            held_out, rest = split_off({"image": test_x, "label": test_y}, validation_size,
                                       np.random.default_rng([split_seed, 1]))
            test_x, test_y = rest["image"], rest["label"]
        # Fixed placements for evaluation; training batches draw a fresh jitter instead.
        for split, (images, labels, shift) in {"train": (self.train_digits, self.train_labels, train_shift),
                                               "eval": (test_x, test_y, train_shift)}.items():
            rng = batch_rng(split_seed, f"digits_canvas/{split}", 0)
            offsets = centred_offsets(canvas, rng, len(labels), shift, train_step)
            self.splits[split] = {"image": self._place(images, offsets), "label": labels}
        self.splits["translated"] = self._translated(test_x, test_y, batch_rng(split_seed, "digits_canvas/translated", 0))
        if held_out is not None:
            self.splits[VALIDATION] = self._translated(held_out["image"], held_out["label"],
                                                       batch_rng(split_seed, f"digits_canvas/{VALIDATION}", 0))
        rng = batch_rng(split_seed, "digits_canvas/scaled", 0)
        centred = self._place(test_x, centred_offsets(canvas, rng, len(test_y), 0))
        scales = rng.uniform(low, high, size=len(test_y))
        self.splits["scaled"] = {"image": affine(centred, scales=scales), "label": test_y}

    def training_offsets(self) -> np.ndarray:
        """(k, 2) every (row, col) move from the centre that a training digit can get."""
        reach = self.train_shift // self.train_step
        axis = self.train_step * np.arange(-reach, reach + 1)
        return np.array(list(itertools.product(axis, axis)), dtype=np.int64).reshape(-1, 2)

    def unseen_offsets(self) -> np.ndarray:
        """(k, 2) the moves within +-max_shift that no training digit gets."""
        seen = {tuple(o) for o in self.training_offsets()}
        axis = range(-self.max_shift, self.max_shift + 1)
        return np.array([o for o in itertools.product(axis, axis) if o not in seen], dtype=np.int64).reshape(-1, 2)

    def _translated(self, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Each digit `translated_copies` times (consecutively), at offsets drawn by `rng`."""
        images, labels = np.repeat(images, self.translated_copies, axis=0), np.repeat(labels, self.translated_copies)
        if self.unseen_shifts:
            choices = self.unseen_offsets()
            offsets = (self.canvas - DIGIT) // 2 + choices[rng.integers(len(choices), size=len(labels))]
        else:
            offsets = centred_offsets(self.canvas, rng, len(labels), self.max_shift)
        return {"image": self._place(images, offsets), "label": labels}

    def _place(self, images: np.ndarray, top_left: np.ndarray) -> np.ndarray:
        return place_on_canvas(images, self.canvas, top_left)

    def batches(self, split: str, shard: Shard) -> Iterator[dict[str, Any]]:
        if split != "train":
            return super().batches(split, shard)

        def make(rng: np.random.Generator, size: int, index: int) -> dict[str, np.ndarray]:
            chosen = epoch_indices(len(self.train_labels), shard.seed, split, size, index)
            offsets = centred_offsets(self.canvas, rng, size, self.train_shift, self.train_step)
            return {"image": self._place(self.train_digits[chosen], offsets), "label": self.train_labels[chosen]}

        return generated_batches(make, split, shard)

    def evaluate(self, model, split, shard):
        metrics = super().evaluate(model, split, shard)
        metrics.update(evaluate_calibration(lambda batch: self.forward(model, batch),
                                            ordered_batches(self.arrays(split), shard), device_of(model),
                                            bins=self.calibration_bins))
        return metrics


def ink_outside_training(task: DigitsOnCanvas, split: str = "translated") -> dict[str, float]:
    """How much of a split's ink falls on canvas pixels that no training digit inks at any
    training offset: an MLP's first-layer weights from such pixels never get a gradient from the
    training images, whatever the loss (gold labels or a teacher's outputs), so no teacher can
    shape how the MLP reads them. Returns the inked and total canvas pixels, the share of the
    split's images with any ink outside ('images_outside') and the mean share of an image's ink
    outside ('ink_outside')."""
    centre, n = (task.canvas - DIGIT) // 2, len(task.train_labels)
    inked = np.zeros((task.canvas, task.canvas), dtype=bool)
    for row, col in task.training_offsets():
        placed = place_on_canvas(task.train_digits, task.canvas, np.tile([centre + row, centre + col], (n, 1)))
        inked |= (placed[:, 0] > 0).any(axis=0)
    ink = task.arrays(split)["image"][:, 0] > 0
    outside = (ink & ~inked).sum(axis=(1, 2)) / np.maximum(ink.sum(axis=(1, 2)), 1)
    return {"inked_pixels": int(inked.sum()), "canvas_pixels": int(inked.size),
            "images_outside": float((outside > 0).mean()), "ink_outside": float(outside.mean())}
