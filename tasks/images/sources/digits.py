"""scikit-learn's bundled handwritten digits (1,797 8x8 images): data that ships with a package,
so default runs need no download. Split into fixed train / test halves by a seeded permutation.
"""
from __future__ import annotations

import functools

import numpy as np

from tasks.images.sources.transforms import resize


@functools.lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    data = load_digits()
    images = (data.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8) in [0, 1]
    return images, data.target.astype(np.int64)


def digits(split: str = "train", size: int = 8, test_fraction: float = 0.3,
           split_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 1, size, size) in [0, 1], labels (N,)) of the 'train' or 'test' part."""
    images, labels = _load()
    order = np.random.default_rng(split_seed).permutation(len(labels))
    cut = int(round(len(labels) * (1 - test_fraction)))
    if split == "train":
        chosen = order[:cut]
    elif split in ("test", "eval"):
        chosen = order[cut:]
    elif split == "all":
        chosen = np.arange(len(labels))
    else:
        raise ValueError(f"digits split must be 'train', 'test' or 'all', got {split!r}")
    chosen_images = images[chosen]
    if size != 8:
        chosen_images = resize(chosen_images, size)
    return chosen_images, labels[chosen]
