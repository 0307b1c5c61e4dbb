"""Digits on a canvas: each test set holds the same test digits, moved exactly as promised
(jittered, translated up to max_shift, zoomed), and training batches resume exactly."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.data import Shard
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


@pytest.mark.parametrize("settings", [{"canvas": 16, "max_shift": 5}, {"canvas": 6},
                                      {"canvas": 16, "scale_range": (1.5, 2.5)}, {"train_shift": -1},
                                      {"scale_range": (1.4, 1.2)}])
def test_shifts_or_zooms_that_leave_the_canvas_are_config_errors(settings):
    with pytest.raises(ConfigError):
        DigitsOnCanvas(**settings)
