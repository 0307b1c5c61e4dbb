"""Values a task's `evaluate` may return besides scalars, written by rank 0 to TensorBoard.

Tasks return these instead of writing to TensorBoard themselves, so they stay free of any
logging or rank logic.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass
class Image:
    """An image (H, W) or (H, W, C), floats in [0, 1] or uint8."""

    pixels: np.ndarray

    def as_hwc_float(self) -> np.ndarray:
        pixels = np.asarray(self.pixels)
        if pixels.dtype == np.uint8:
            pixels = pixels.astype(np.float32) / 255.0
        if pixels.ndim == 2:
            pixels = pixels[..., None]
        return np.clip(pixels.astype(np.float32), 0.0, 1.0)


@dataclasses.dataclass
class Figure:
    """A matplotlib figure (closed after it is written)."""

    figure: Any


@dataclasses.dataclass
class Text:
    """Markdown text."""

    text: str


@dataclasses.dataclass
class Video:
    """Frames (T, H, W, C) in [0, 1]."""

    frames: np.ndarray
    fps: int = 4


def is_summary(value: Any) -> bool:
    return isinstance(value, (Image, Figure, Text, Video))


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile (N, H, W[, C]) images into one (rows*H, columns*W, C) array in [0, 1]."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    grid = np.ones((rows * (h + pad) - pad, columns * (w + pad) - pad, c), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, columns)
        grid[r * (h + pad):r * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = images[i]
    return np.clip(grid, 0.0, 1.0)
