"""Data of the saturation study: the many-class procedural upstream set (nested data fractions,
labels that encode the attributes), the few-shot sources, and images read from files."""
from __future__ import annotations

import os

import numpy as np
import pytest

from engine.errors import ConfigError
from tasks.saturation.fewshot_sets import (CoarseShapes, DigitsFewShot, FilesFewShot, NoiseLevel, ObjectCount,
                                TextureFrequency)
from tasks.images.image_files import ImageFilesClassification
from tasks.images.sources.files import read_cifar_batches, read_image_folder
from tasks.images.sources.labelled_shapes import Factors, chunked, labelled_images
from tasks.saturation.upstream import ShapesUpstream


def test_a_smaller_data_fraction_is_a_prefix_of_the_full_set_and_eval_does_not_move():
    small = ShapesUpstream(image_size=8, num_examples=1500, data_fraction=0.4, eval_examples=50)
    full = ShapesUpstream(image_size=8, num_examples=1500, data_fraction=1.0, eval_examples=50)
    assert len(small.splits["train"]["label"]) == 600 and len(full.splits["train"]["label"]) == 1500
    for key in ("image", "label"):
        assert np.array_equal(small.splits["train"][key], full.splits["train"][key][:600])
        assert np.array_equal(small.splits["eval"][key], full.splits["eval"][key])
    assert not np.array_equal(full.splits["eval"]["image"], full.splits["train"]["image"][:50])
    assert small.epochs(steps=30, batch_size=40) == 2.0


def test_labels_encode_shape_colour_texture_and_position():
    factors = Factors()
    arrays = chunked(lambda rng, n: labelled_images(rng, n, factors, image_size=16, scale=(0.2, 0.32), frequency=2.0),
                     (0, 1), 2500)
    labels = arrays["label"]
    assert factors.num_classes == 384 and labels.min() >= 0 and labels.max() < 384
    assert np.array_equal(labels // (8 * 4 * 2), arrays["shape"])  # the coarse class is the leading factor
    assert len(np.unique(labels)) > 370  # (nearly) every class appears in 2,500 draws
    images = arrays["image"].astype(np.float32)
    left, right = labels % 2 == 0, labels % 2 == 1  # position bin: which half holds the object
    mass = images.sum(axis=(1, 2))  # (N, W): ink per column
    assert (mass[left, :8].sum(1) > mass[left, 8:].sum(1)).mean() > 0.95
    assert (mass[right, 8:].sum(1) > mass[right, :8].sum(1)).mean() > 0.95


def test_upstream_settings_that_cannot_work_are_config_errors():
    with pytest.raises(ConfigError, match="make 384 classes"):
        ShapesUpstream(image_size=8, num_examples=10, eval_examples=10, num_classes=100)
    with pytest.raises(ConfigError, match="data_fraction"):
        ShapesUpstream(image_size=8, num_examples=10, data_fraction=0.0)
    with pytest.raises(ConfigError, match="positions"):
        ShapesUpstream(image_size=8, num_examples=10, positions=3)


SOURCES = [CoarseShapes(pool_per_class=5, test_per_class=4), TextureFrequency(pool_per_class=5, test_per_class=4),
           ObjectCount(pool_per_class=5, test_per_class=4), NoiseLevel(pool_per_class=5, test_per_class=4),
           DigitsFewShot(pool_per_class=5, test_per_class=4)]


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_fewshot_sources_are_balanced_deterministic_and_sized_for_the_model(source):
    data = source.load(16, channels=3)
    assert data.train_images.shape == (5 * data.num_classes, 3, 16, 16) and data.train_images.dtype == np.float32
    assert np.bincount(data.train_labels).tolist() == [5] * data.num_classes
    assert np.bincount(data.test_labels).tolist() == [4] * data.num_classes
    assert 0 <= data.train_images.min() and data.train_images.max() <= 1
    again = type(source)(pool_per_class=5, test_per_class=4).load(16, channels=3)
    assert np.array_equal(again.train_images, data.train_images)
    assert not np.array_equal(data.train_images[:4], data.test_images[:4])


def test_far_sources_show_what_their_labels_name():
    count = ObjectCount(pool_per_class=30, test_per_class=1).load(16)
    ink = (count.train_images.max(axis=1) > 0).sum(axis=(1, 2))
    means = [ink[count.train_labels == c].mean() for c in range(4)]
    assert means == sorted(means) and means[3] > 2.5 * means[0]  # more objects, more ink
    noise = NoiseLevel(pool_per_class=30, test_per_class=1).load(16)
    roughness = np.abs(np.diff(noise.train_images, axis=-1)).mean(axis=(1, 2, 3))  # pixel-to-pixel jumps
    means = [roughness[noise.train_labels == c].mean() for c in range(4)]
    assert means == sorted(means) and means[3] > 2 * means[0]


def test_image_folder_and_cifar_batches_read_back_exactly(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        os.makedirs(tmp_path / "folder" / name)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).save(tmp_path / "folder" / name / f"{i}.png")
    images, labels, classes = read_image_folder(str(tmp_path / "folder"))
    assert classes == ["cat", "dog"] and labels.tolist() == [0, 0, 0, 1, 1, 1] and images.shape == (6, 3, 6, 6)
    first = np.asarray(Image.open(tmp_path / "folder" / "cat" / "0.png")).transpose(2, 0, 1)
    assert np.array_equal(images[0], first)
    assert read_image_folder(str(tmp_path / "folder"), image_size=4)[0].shape == (6, 3, 4, 4)

    pixels = rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    fine, coarse = np.array([7, 1, 99, 0, 42], dtype=np.uint8), np.array([3, 0, 19, 0, 8], dtype=np.uint8)
    np.concatenate([fine[:, None] % 10, pixels.reshape(5, -1)], 1).tofile(tmp_path / "c10.bin")
    np.concatenate([coarse[:, None], fine[:, None], pixels.reshape(5, -1)], 1).tofile(tmp_path / "c100.bin")
    images, labels = read_cifar_batches([str(tmp_path / "c10.bin")])
    assert np.array_equal(images, pixels) and labels.tolist() == (fine % 10).tolist()
    images, labels = read_cifar_batches([str(tmp_path / "c100.bin")], label_bytes=2, label_index=1)
    assert np.array_equal(images, pixels) and labels.tolist() == fine.tolist()
    with pytest.raises(ConfigError, match="not a CIFAR-10 binary batch"):
        read_cifar_batches([str(tmp_path / "c100.bin")])  # 2 label bytes read as 1


def test_image_files_task_and_fewshot_source(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for name in ("a", "b", "c"):
            os.makedirs(tmp_path / split / name)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / split / name / f"{i}.png")
    task = ImageFilesClassification(train_path=str(tmp_path / "train"), eval_path=str(tmp_path / "test"),
                                    data_fraction=0.5)
    assert task.num_classes == 3 and len(task.splits["train"]["label"]) == 6 and len(task.splits["eval"]["label"]) == 12
    source = FilesFewShot(name="files", pool_path=str(tmp_path / "train"), test_path=str(tmp_path / "test"),
                          pool_per_class=2, test_per_class=3)
    data = source.load(16)
    assert data.num_classes == 3 and data.train_images.shape == (6, 3, 16, 16) and len(data.test_labels) == 9
    with pytest.raises(ConfigError, match="file_format"):
        FilesFewShot(name="x", pool_path="p", test_path="t", file_format="tfrecord")


def test_image_files_gin_trains_a_resnet_on_cifar_batches(tmp_path):
    from engine.logging import read_metrics
    from tests.helpers import losses, train_in_process
    rng = np.random.default_rng(2)
    for name, n in (("train.bin", 64), ("test.bin", 16)):
        labels = np.stack([rng.integers(0, 20, n), rng.integers(0, 100, n)], 1).astype(np.uint8)  # coarse, fine
        np.concatenate([labels, rng.integers(0, 256, (n, 3072), dtype=np.uint8)], 1).tofile(tmp_path / name)
    workdir = str(tmp_path / "run")
    train_in_process(workdir, [
        f"ImageFilesClassification.train_path = '{tmp_path / 'train.bin'}'",
        f"ImageFilesClassification.eval_path = '{tmp_path / 'test.bin'}'", "IMAGE_SIZE = 8",
        "train.steps = 3", "train.batch_size = 8", "train.eval_every = 3", "train.log_every = 1",
        "FewShotEvaluator.sources = [@DigitsFewShot()]", "FewShotEvaluator.shots = [1]",
        "DigitsFewShot.pool_per_class = 1", "DigitsFewShot.test_per_class = 1"],
        files=("gin/saturation/image_files.gin", "gin/saturation/model/resnet_tiny.gin"))
    assert sorted(losses(workdir)) == [1, 2, 3]
    evals = [r for r in read_metrics(workdir) if r["split"] == "eval"]
    assert "fewshot/digits/1shot" in evals[-1] and 0 <= evals[-1]["accuracy"] <= 1
