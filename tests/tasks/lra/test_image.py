"""Image: the CIFAR-10 binary-batch loader (grayscale, 1,024 tokens) and the digits stand-in."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from engine.errors import ConfigError
from engine.data import Shard
from tasks.lra.image import LRAImage, TEST_FILE, TRAIN_FILES


def write_batch(path, labels, colours) -> None:
    records = []
    for label, (r, g, b) in zip(labels, colours):
        planes = np.concatenate([np.full(1024, r), np.full(1024, g), np.full(1024, b)])
        records.append(np.concatenate([[label], planes]).astype(np.uint8))
    np.stack(records).tofile(path)


def test_cifar_binary_batches_round_trip_as_grayscale_pixels(tmp_path, monkeypatch):
    monkeypatch.delenv("LRA_DATA", raising=False)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i, name in enumerate(TRAIN_FILES):
        write_batch(folder / name, labels=[i, 9 - i] * 5, colours=[(255, 0, 0), (0, 255, 0)] * 5)
    write_batch(folder / TEST_FILE, labels=[3, 4], colours=[(0, 0, 255), (10, 20, 30)])
    task = LRAImage(data_dir=str(tmp_path))
    assert [len(task.splits[s]["label"]) for s in ("train", "eval", "test")] == [45, 5, 2]  # 90 / 10 / test
    assert task.splits["train"]["tokens"].shape == (45, 1024)
    assert set(task.splits["train"]["tokens"][0]) == {76}        # round(0.2989 * 255): pure red
    assert set(task.splits["train"]["tokens"][1]) == {150}       # round(0.5870 * 255): pure green
    assert set(task.splits["test"]["tokens"][1]) == {18}         # round(2.989 + 11.74 + 3.42)
    assert task.splits["test"]["label"].tolist() == [3, 4]
    (folder / TEST_FILE).write_bytes(b"\x00" * 100)
    with pytest.raises(ConfigError, match="not a CIFAR-10 binary batch"):
        LRAImage(data_dir=str(tmp_path))


def test_digits_stand_in_is_announced_and_has_the_image_task_shape(caplog, monkeypatch):
    monkeypatch.delenv("LRA_DATA", raising=False)
    with caplog.at_level(logging.WARNING, logger="tasks.lra"):
        task = LRAImage()
    assert "STAND-IN" in caplog.text and "digits" in caplog.text
    batch = next(task.batches("train", Shard(batch_size=4)))
    tokens, mask = task.decode(batch)
    assert tokens.shape == (4, 1024) and mask is None and 0 <= tokens.min() and tokens.max() <= 255
    assert len(task.splits["eval"]["label"]) + len(task.splits["test"]["label"]) == 539
