"""Shared image sources: transforms, digits, procedural shapes and array-backed tasks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.data import Shard
from engine.errors import ConfigError
from tasks.common.arrays import epoch_indices, ordered_batches
from tasks.images.digits import DigitsClassification
from tasks.images.sources.digits import digits
from tasks.images.sources.shapes import SHAPES, render, sample_scenes
from tasks.images.sources.transforms import affine, place_on_canvas, rotate


def test_rotation_by_90_degrees_is_a_quarter_turn():
    image = np.zeros((1, 1, 8, 8), dtype=np.float32)
    image[0, 0, 1, 5] = 1.0  # upper right
    turned = rotate(image, 90.0)
    assert np.allclose(turned[0, 0], np.rot90(image[0, 0]), atol=1e-5)  # counter-clockwise


def test_shift_and_canvas_move_content():
    image = np.zeros((1, 1, 8, 8), dtype=np.float32)
    image[0, 0, 2, 2] = 1.0
    moved = affine(image, shifts=np.array([[0.25, 0.0]]))  # a quarter of the width to the right
    assert moved[0, 0, 2, 4] == 1.0
    canvas = place_on_canvas(image, 16, np.array([[4, 6]]))
    assert canvas[0, 0, 6, 8] == 1.0 and canvas.sum() == 1.0


def test_digits_split_is_fixed_and_disjoint():
    train_x, train_y = digits("train")
    test_x, test_y = digits("test")
    assert len(train_y) + len(test_y) == 1797
    assert train_x.shape[1:] == (1, 8, 8) and 0 <= train_x.min() and train_x.max() <= 1
    assert digits("train", size=16)[0].shape[1:] == (1, 16, 16)
    flat_train = {x.tobytes() for x in train_x}
    assert sum(x.tobytes() in flat_train for x in test_x) < 5  # (a few duplicate images exist)


def test_epoch_indices_cover_each_example_once_per_epoch():
    n, batch = 10, 4
    stream = np.concatenate([epoch_indices(n, 0, "train", batch, i) for i in range(5)])
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:20])


def test_ordered_batches_split_the_whole_split_across_ranks():
    arrays = {"x": np.arange(11), "label": np.arange(11)}
    seen = [int(v) for r in range(2) for b in ordered_batches(arrays, Shard(batch_size=4, rank=r, world_size=2))
            for v in b["x"]]
    assert sorted(seen) == list(range(11))


def test_digits_task_trains_from_shuffled_batches():
    task = DigitsClassification(image_size=8)
    batch = next(task.batches("train", Shard(batch_size=16, seed=1)))
    assert batch["image"].shape == (16, 1, 8, 8) and batch["label"].dtype == torch.int64


def test_digits_validation_is_held_out_of_training():
    whole = DigitsClassification(image_size=8)
    held = DigitsClassification(image_size=8, validation_size=100)
    train, validation = held.splits["train"]["image"], held.splits["validation"]["image"]
    assert len(validation) == 100 and len(train) + 100 == len(whole.splits["train"]["image"])
    assert np.array_equal(np.concatenate([train, validation]), whole.splits["train"]["image"])
    assert np.array_equal(held.splits["eval"]["image"], whole.splits["eval"]["image"])
    with pytest.raises(ConfigError, match="validation_size"):
        DigitsClassification(validation_size=10_000)


def test_shapes_render_every_shape_inside_the_canvas():
    rng = np.random.default_rng(0)
    scene = sample_scenes(rng, 60, max_objects=1)
    images = render(scene, 32)
    assert images.shape == (60, 3, 32, 32)
    assert set(scene.shape[:, 0]) == set(range(len(SHAPES)))
    assert (images.reshape(60, -1).max(axis=1) > 0).all()  # every image shows its object
    again = render(sample_scenes(np.random.default_rng(0), 60, max_objects=1), 32)
    assert np.array_equal(images, again)
