"""LRA Image: sequential CIFAR-10, each grayscale pixel a token (1,024 tokens, vocabulary 256).

Reads the CIFAR-10 binary batches (`cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin`);
train = the first 90% of the training batches, eval = the last 10%, test = test_batch, as in
LRA. Without them, a stand-in is used and announced: scikit-learn's digits upscaled to 32x32.
"""
from __future__ import annotations

import os

import gin
import numpy as np

from tasks.images.sources.digits import digits
from tasks.images.sources.files import read_cifar_batches as read_rgb_cifar_batches
from tasks.lra.base import SequenceTask, release_dir

TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140])  # tf.image.rgb_to_grayscale


def read_cifar_batches(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(grayscale uint8 (n, 1024), labels) from CIFAR-10 binary batch files (read as RGB by the
    shared reader in tasks.images.sources.files)."""
    rgb, labels = read_rgb_cifar_batches(paths)
    rgb = rgb.reshape(len(rgb), 3, 32 * 32).astype(np.float64)
    gray = np.round(np.einsum("c,ncp->np", GRAY_WEIGHTS, rgb)).clip(0, 255).astype(np.uint8)
    return gray, labels


def _cifar_folder(folder: str) -> str | None:
    for root in (folder, os.path.join(folder, "cifar-10-batches-bin")):
        if all(os.path.isfile(os.path.join(root, f)) for f in TRAIN_FILES + (TEST_FILE,)):
            return root
    return None


@gin.configurable
class LRAImage(SequenceTask):
    """10-way classification of 32x32 grayscale images read as 1,024 pixel tokens, no padding.
    A missing or truncated batch file, or a label byte outside 0..9, is a ConfigError naming the
    file (and record): tasks.images.sources.files.read_cifar_batches."""

    def __init__(self, *, data_dir: str | None = None) -> None:
        super().__init__()
        self.vocab_size = 256
        self.num_classes = 10
        nested = data_dir and os.path.isdir(os.path.join(os.path.expanduser(data_dir), "cifar-10-batches-bin"))
        folder = release_dir(data_dir, "cifar-10-batches-bin", lambda d: _cifar_folder(d) is not None,
                             "LRAImage.data_dir (cifar-10-batches-bin with data_batch_1..5.bin, test_batch.bin)",
                             expected=[os.path.join("cifar-10-batches-bin", f) if nested else f
                                       for f in TRAIN_FILES + (TEST_FILE,)])
        if folder is None:
            train_images, train_labels = digits("train", size=32)
            test_images, test_labels = digits("test", size=32)
            half = len(test_labels) // 2
            pixels = lambda images: np.round(images.reshape(len(images), -1) * 255).astype(np.uint8)  # noqa: E731
            self.splits = {
                "train": {"tokens": pixels(train_images), "label": train_labels},
                "eval": {"tokens": pixels(test_images[:half]), "label": test_labels[:half]},
                "test": {"tokens": pixels(test_images[half:]), "label": test_labels[half:]},
            }
            self.describe("STAND-IN DATA: no CIFAR-10 files found (set LRAImage.data_dir or "
                          "$LRA_DATA/cifar-10-batches-bin); training on scikit-learn's digits upscaled to "
                          f"32x32 grayscale ({len(train_labels)} / {half} / {len(test_labels) - half} images)",
                          stand_in=True)
            return
        root = _cifar_folder(folder)
        images, labels = read_cifar_batches([os.path.join(root, f) for f in TRAIN_FILES])
        cut = int(0.9 * len(labels))
        test_images, test_labels = read_cifar_batches([os.path.join(root, TEST_FILE)])
        self.splits = {"train": {"tokens": images[:cut], "label": labels[:cut]},
                       "eval": {"tokens": images[cut:], "label": labels[cut:]},
                       "test": {"tokens": test_images, "label": test_labels}}
        self.describe(f"CIFAR-10 binary batches in {root} (grayscale)")
