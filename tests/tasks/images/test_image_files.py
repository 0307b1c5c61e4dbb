"""Malformed image files (tasks/images/sources/files.py and its users ImageFilesClassification
and FilesFewShot): a missing, truncated or foreign file, a label outside the format's classes, an
image of another size or bit depth, and class folders that differ between two paths are each one
ConfigError naming the file (and record); never a silently wrong label."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from tasks.images.image_files import ImageFilesClassification
from tasks.images.sources.files import read_cifar_batches, read_image_folder, read_images
from tasks.saturation.fewshot_sets import FilesFewShot
from tests.helpers import config_error, run_cli


@pytest.fixture(autouse=True)
def fresh_reads():
    read_images.cache_clear()  # the tests rewrite files under the same paths
    yield
    read_images.cache_clear()


def cifar100(path, coarse, fine) -> str:
    records = np.zeros((len(fine), 3074), dtype=np.uint8)
    records[:, 0], records[:, 1] = coarse, fine
    records.tofile(path)
    return str(path)


def test_cifar100_label_bytes_are_checked_record_by_record(tmp_path):
    path = cifar100(tmp_path / "train.bin", coarse=[1, 19, 4], fine=[5, 99, 0])
    assert read_cifar_batches([path], label_bytes=2, label_index=1)[1].tolist() == [5, 99, 0]
    cifar100(tmp_path / "train.bin", coarse=[1, 20, 4], fine=[5, 99, 0])
    with config_error("train.bin", "record 1", "the coarse label 20 is outside 0..19"):
        read_cifar_batches([path], label_bytes=2, label_index=1)
    cifar100(tmp_path / "train.bin", coarse=[1, 2, 4], fine=[5, 99, 100])
    with config_error("train.bin", "record 2", "the fine label 100 is outside 0..99"):
        read_cifar_batches([path], label_bytes=2, label_index=1)


def test_cifar_missing_truncated_and_foreign_files(tmp_path):
    with config_error(tmp_path / "nope.bin", "no such file (a CIFAR-10 binary batch)"):
        read_cifar_batches([str(tmp_path / "nope.bin")])
    path = cifar100(tmp_path / "cut.bin", coarse=[1, 2], fine=[3, 4])
    with open(path, "r+b") as handle:
        handle.truncate(3074 + 1000)
    with config_error("cut.bin", "is not a CIFAR-100 binary batch", "4,074 bytes are 1 records and 1,000 bytes over"):
        read_cifar_batches([path], label_bytes=2)
    with config_error(tmp_path / "nowhere", "no CIFAR binary batches"):
        read_images(str(tmp_path / "nowhere"), "cifar10")


def image_folder(root, classes=("cat", "dog"), size=(6, 6), count=2) -> str:
    from PIL import Image
    rng = np.random.default_rng(0)
    for name in classes:
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, name, f"{i}.png"))
    return str(root)


def test_truncated_and_corrupt_images_name_the_file(tmp_path):
    root = image_folder(tmp_path / "folder")
    with open(os.path.join(root, "dog", "1.png"), "r+b") as handle:
        handle.truncate(60)
    with config_error(os.path.join("dog", "1.png"), "is not a readable image", "truncated or corrupt?"):
        read_image_folder(root)
    with open(os.path.join(root, "dog", "1.png"), "wb") as handle:
        handle.write(b"not an image at all")
    with config_error(os.path.join("dog", "1.png"), "is not a readable image"):
        read_image_folder(root)


def test_an_image_of_another_size_or_bit_depth_is_refused_unless_image_size_resizes(tmp_path):
    from PIL import Image
    root = image_folder(tmp_path / "folder")
    Image.fromarray(np.zeros((5, 7, 3), dtype=np.uint8)).save(os.path.join(root, "dog", "2.png"))
    with config_error(os.path.join("dog", "2.png"), "is 7x5 pixels but", os.path.join("cat", "0.png"), "is 6x6",
                      "set an image_size"):
        read_image_folder(root)
    assert read_image_folder(root, image_size=4)[0].shape == (5, 3, 4, 4)  # documented: resized
    os.remove(os.path.join(root, "dog", "2.png"))
    Image.fromarray(np.full((6, 6), 40000, dtype=np.uint16)).save(os.path.join(root, "dog", "2.png"))
    with config_error(os.path.join("dog", "2.png"), "holds a 'I;16' image; expected 8 bits per channel"):
        read_image_folder(root)


def test_hidden_folders_are_ignored_and_non_images_skipped_with_a_count(tmp_path, caplog):
    root = image_folder(tmp_path / "folder")
    os.makedirs(os.path.join(root, ".ipynb_checkpoints"))  # would otherwise become class 0
    open(os.path.join(root, "cat", "notes.txt"), "w").close()
    open(os.path.join(root, "dog", "Thumbs.db"), "w").close()
    with caplog.at_level(logging.WARNING, logger="tasks.images"):
        images, labels, classes = read_image_folder(root)
    assert classes == ["cat", "dog"] and labels.tolist() == [0, 0, 1, 1]
    assert "skipped 2 file(s) without an image extension" in caplog.text


def test_train_and_eval_folders_must_name_the_same_classes(tmp_path):
    train = image_folder(tmp_path / "train", classes=("ant", "bee", "cat"))
    test = image_folder(tmp_path / "test", classes=("ant", "cat"))  # 'cat' would be label 1 here, 2 in train
    with config_error("ImageFilesClassification", "has classes ['ant', 'bee', 'cat']", "only in one: ['bee']"):
        ImageFilesClassification(train_path=train, eval_path=test)
    source = FilesFewShot(name="files", pool_path=train, test_path=test, pool_per_class=1, test_per_class=1)
    with config_error("FilesFewShot 'files'", "only in one: ['bee']"):
        source.load(8)
    image_folder(tmp_path / "test", classes=("bee",))
    read_images.cache_clear()
    task = ImageFilesClassification(train_path=train, eval_path=test)
    assert task.num_classes == 3 and sorted(set(task.splits["eval"]["label"].tolist())) == [0, 1, 2]


def test_cli_reports_a_truncated_cifar_batch_in_one_line(tmp_path):
    train = cifar100(tmp_path / "train.bin", coarse=[1] * 8, fine=list(range(8)))
    cifar100(tmp_path / "test.bin", coarse=[1, 2], fine=[3, 4])
    with open(tmp_path / "test.bin", "r+b") as handle:
        handle.truncate(3074 + 17)
    result = run_cli(["--gin", "gin/saturation/image_files.gin", "--gin", "gin/saturation/model/resnet_tiny.gin",
                      "--workdir", str(tmp_path / "run"), "--bind", f"ImageFilesClassification.train_path = '{train}'",
                      "--bind", f"ImageFilesClassification.eval_path = '{tmp_path / 'test.bin'}'"])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{tmp_path / 'test.bin'}: is not a CIFAR-100 binary batch" in lines[0], result.stderr
