"""Pathfinder: the generator's labels and markers, seeding, the task's pixels, the released layout."""
from __future__ import annotations

import os

import numpy as np
import pytest

from engine.errors import ConfigError
from engine.data import Shard
from tasks.lra.pathfinder import LRAPathfinder, generate_images
from tasks.lra.pathfinder_curves import curve_style, image_rng, sample


def curves_at(drawn, point) -> set[int]:
    """Which target curves have ink in the pixel at `point`."""
    return {i for i in range(2) if drawn.target_ink[i, point[0], point[1]] > 0}


@pytest.mark.parametrize("size,difficulty,count", [(16, "easy", 30), (32, "hard", 4), (128, "hard", 1)])
def test_markers_lie_on_curve_pixels_one_curve_for_positives_two_for_negatives(size, difficulty, count):
    style = curve_style(size, difficulty)
    for index in range(count):
        drawn = sample(style, image_rng(7, index))
        first, second = (curves_at(drawn, point) for point in drawn.markers)
        assert len(first) == 1 and len(second) == 1, "each marker sits on exactly one target curve"
        assert (first == second) == (drawn.label == 1)
        assert all(drawn.image[r, c] > 0 for r, c in drawn.markers)
        if size == 16:  # one contrast for every curve: the full-coverage markers are the brightest
            assert all(drawn.image[r, c] == 255 for r, c in drawn.markers)
        assert drawn.image.dtype == np.uint8 and drawn.image.shape == (size, size)


def test_labels_are_balanced_and_the_generator_is_seeded():
    style = curve_style(16, "easy")
    images, labels = generate_images(style, seed=0, count=80)
    assert 0.3 < labels.mean() < 0.7  # a fair coin: 4 standard deviations
    # Seeded, and image i does not depend on how the stream is cut into chunks or workers.
    again, same_labels = generate_images(style, seed=0, count=6)
    assert np.array_equal(images[:6], again) and np.array_equal(labels[:6], same_labels)
    other, _ = generate_images(style, seed=1, count=6)
    assert not np.array_equal(images[:6], other)


def test_label_is_given_or_a_fair_coin_and_contour_length_sets_the_difficulty():
    style = curve_style(32, "hard")
    assert style.contour_length == 14 and style.distractor_length == 4 and style.num_distractors == 5
    assert curve_style(128, "hard").paddle_margins == (2, 3)
    assert sample(curve_style(16, "easy"), image_rng(0, 0), label=1).label == 1


def test_task_feeds_pixels_as_tokens_without_masking_black_pixels(tmp_path):
    task = LRAPathfinder(image_size=16, difficulty="easy", num_train=16, num_eval=4, num_test=4, cache=str(tmp_path))
    batch = next(task.batches("train", Shard(batch_size=8)))
    tokens, mask = task.decode(batch)
    assert tokens.shape == (8, 256) and mask is None
    assert (tokens == 0).any() and task.vocab_size == 256
    assert "examples" in task.summarize("eval", {})


def test_released_layout_round_trips_and_skips_unreadable_images(tmp_path):
    from PIL import Image

    folder = tmp_path / "pathfinder16" / "curv_contour_length_14"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 16, 16), dtype=np.uint8)
    images[:, :4] = 0  # black pixels are data too
    labels = rng.integers(0, 2, size=10)
    os.makedirs(folder / "imgs" / "0")
    lines = []
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(folder / "imgs" / "0" / f"sample_{i}.png")
        lines.append(f"imgs/0 sample_{i}.png {i} {label} 1.0 14 4 2 0.5 1 1")
    lines.append("imgs/0 sample_10.png 10 1 1.0 14 4 2 0.5 1 1")
    (folder / "imgs" / "0" / "sample_10.png").write_bytes(b"")  # the release has an empty PNG too
    os.makedirs(folder / "metadata")
    (folder / "metadata" / "0.npy").write_text("\n".join(lines) + "\n")  # text, despite the name

    task = LRAPathfinder(image_size=16, data_dir=str(tmp_path / "pathfinder16"), cache=str(tmp_path / "cache"))
    seen = {(task.splits[s]["tokens"][i].tobytes(), int(task.splits[s]["label"][i]))
            for s in ("train", "eval", "test") for i in range(len(task.splits[s]["label"]))}
    assert seen == {(image.reshape(-1).tobytes(), int(label)) for image, label in zip(images, labels)}
    assert [len(task.splits[s]["label"]) for s in ("train", "eval", "test")] == [8, 1, 1]
    with pytest.raises(ConfigError, match="not 32x32"):
        LRAPathfinder(image_size=32, data_dir=str(folder), cache=str(tmp_path / "cache"))


def test_bad_settings_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="image_size"):
        LRAPathfinder(image_size=20, cache=str(tmp_path))
    with pytest.raises(ConfigError, match="difficulty"):
        LRAPathfinder(image_size=32, difficulty="extreme", cache=str(tmp_path))
