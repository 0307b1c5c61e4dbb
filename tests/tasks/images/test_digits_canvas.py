"""Digits on a canvas: each test set holds the same test digits, moved exactly as promised
(jittered, translated up to max_shift, zoomed), and training batches resume exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.data import Shard
from tasks.common.arrays import epoch_indices
from tasks.images.digits_canvas import DigitsOnCanvas
from tasks.images.sources.digits import digits


def offset_of(image: np.ndarray, digit: np.ndarray) -> tuple[int, int] | None:
    """Where the 8x8 `digit` sits on the canvas `image`, if the image is exactly that digit moved."""
    size = image.shape[-1] - 8
    for row in range(size + 1):
        for col in range(size + 1):
            placed = np.zeros_like(image)
            placed[row:row + 8, col:col + 8] = digit
            if np.array_equal(placed, image):
                return row, col
    return None


def test_test_sets_move_the_test_digits_by_the_promised_amounts():
    task = DigitsOnCanvas(canvas=16, train_shift=1, max_shift=4, scale_range=(1.2, 1.4))
    originals, labels = digits("test")
    centre = 4
    for split, limit in (("eval", 1), ("translated", 4)):
        arrays = task.arrays(split)
        assert np.array_equal(arrays["label"], labels)
        shifts = np.array([np.subtract(offset_of(arrays["image"][i, 0], originals[i, 0]), centre) for i in range(60)])
        assert np.abs(shifts).max() == limit and len({tuple(s) for s in shifts}) >= min(10, (2 * limit + 1) ** 2)
    # Zooming spreads the ink: the scaled digits cover more of the canvas than the originals.
    def inked(images: np.ndarray) -> float:
        return float((images > 0.1).sum(axis=(1, 2, 3)).mean())
    assert inked(task.arrays("scaled")["image"]) > 1.3 * inked(task.arrays("eval")["image"])


def test_training_batches_are_a_pure_function_of_seed_and_index():
    task = DigitsOnCanvas(canvas=12, train_shift=2, max_shift=2)
    first = next(task.batches("train", Shard(batch_size=16, seed=3)))
    again = next(task.batches("train", Shard(batch_size=16, seed=3)))
    later = next(task.batches("train", Shard(batch_size=16, seed=3, start=1)))
    halves = [next(task.batches("train", Shard(batch_size=16, seed=3, rank=r, world_size=2))) for r in range(2)]
    assert torch.equal(first["image"], again["image"]) and not torch.equal(first["image"], later["image"])
    assert torch.equal(torch.cat([h["image"] for h in halves]), first["image"])
    ink = first["image"].sum(dim=(1, 2, 3))  # the whole digit always lands on the canvas
    assert torch.all(ink > 0)


def test_covered_bed_tests_only_offsets_training_never_uses():
    """Training (and 'eval') digits sit on the lattice of even offsets; 'translated' and the
    validation split put held-out digits, each twice, at offsets with an odd coordinate; the
    validation digits are the test digits that no test split holds."""
    task = DigitsOnCanvas(canvas=16, train_shift=4, train_step=2, max_shift=4, unseen_shifts=True,
                          translated_copies=2, validation_size=100)
    originals, labels = digits("test")
    assert len(task.training_offsets()) == 25 and len(task.unseen_offsets()) == 56
    centre = 4

    def moved(image: np.ndarray, digit: np.ndarray) -> tuple[int, int] | None:
        found = offset_of(image, digit[0])
        return None if found is None else (found[0] - centre, found[1] - centre)

    chosen = epoch_indices(len(task.train_labels), 0, "train", 64, 0)
    train = next(task.batches("train", Shard(batch_size=64, seed=0)))["image"].numpy()
    assert all(r % 2 == 0 and c % 2 == 0 for r, c in (moved(train[i, 0], task.train_digits[chosen[i]])
                                                      for i in range(64)))
    # The eval digits are the test digits in order, less the validation ones.
    kept, where, j = [], [], 0
    for image in task.arrays("eval")["image"][:, 0]:
        while moved(image, originals[j]) is None:
            j += 1
        kept.append(j)
        where.append(moved(image, originals[j]))
        j += 1
    assert all(r % 2 == 0 and c % 2 == 0 for r, c in where)
    held_out = sorted(set(range(len(labels))) - set(kept))
    assert len(held_out) == 100
    for split, order in (("translated", kept), ("translated_validation", held_out)):
        arrays = task.arrays(split)
        assert np.array_equal(arrays["label"], np.repeat(labels[order], 2))
        offsets = [moved(arrays["image"][i, 0], originals[order[i // 2]]) for i in range(160)]
        assert all(r % 2 or c % 2 for r, c in offsets) and len(set(offsets)) >= 30


@pytest.mark.parametrize("settings", [{"canvas": 16, "max_shift": 5}, {"canvas": 6},
                                      {"canvas": 16, "scale_range": (1.5, 2.5)}, {"train_shift": -1},
                                      {"scale_range": (1.4, 1.2)}, {"train_step": 0}, {"translated_copies": 0},
                                      {"train_shift": 4, "max_shift": 4, "unseen_shifts": True},
                                      {"validation_size": 539}, {"unseen_shifts": 1}])
def test_shifts_or_zooms_that_leave_the_canvas_are_config_errors(settings):
    with pytest.raises(ConfigError):
        DigitsOnCanvas(**settings)
