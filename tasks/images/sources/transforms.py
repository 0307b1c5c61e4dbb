"""Array image transforms (N, C, H, W floats in [0, 1]): resize, rotate, translate, place on a canvas.

Written with torch's grid sampling so any angle, scale or shift is exact and batched.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize to size x size."""
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    out = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    return out.clamp(0, 1).numpy()


def affine(images: np.ndarray, angles_deg: np.ndarray | float = 0.0, scales: np.ndarray | float = 1.0,
           shifts: np.ndarray | None = None) -> np.ndarray:
    """Rotate (counter-clockwise, degrees), scale and shift (fractions of the width) each image
    about its centre; pixels from outside are zero."""
    n = images.shape[0]
    # Image rows grow downwards, so a visually counter-clockwise turn is a negative angle here.
    angles = -np.broadcast_to(np.asarray(angles_deg, dtype=np.float64), (n,)) * math.pi / 180
    scale = np.broadcast_to(np.asarray(scales, dtype=np.float64), (n,))
    shift = np.zeros((n, 2)) if shifts is None else np.asarray(shifts, dtype=np.float64).reshape(n, 2)
    cos, sin = np.cos(angles) / scale, np.sin(angles) / scale
    # The grid maps output coordinates to input ones: the inverse of the wanted transform.
    theta = np.stack([np.stack([cos, sin, -(cos * shift[:, 0] + sin * shift[:, 1]) * 2], 1),
                      np.stack([-sin, cos, -(-sin * shift[:, 0] + cos * shift[:, 1]) * 2], 1)], 1)
    tensor = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    grid = F.affine_grid(torch.from_numpy(theta).float(), list(tensor.shape), align_corners=False)
    return F.grid_sample(tensor, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1).numpy()


def rotate(images: np.ndarray, angles_deg: np.ndarray | float) -> np.ndarray:
    return affine(images, angles_deg=angles_deg)


def place_on_canvas(images: np.ndarray, canvas: int, top_left: np.ndarray) -> np.ndarray:
    """Paste each (C, h, w) image into a zero (C, canvas, canvas) canvas at integer (row, col)."""
    n, c, h, w = images.shape
    out = np.zeros((n, c, canvas, canvas), dtype=np.float32)
    for i, (row, col) in enumerate(np.asarray(top_left, dtype=np.int64)):
        out[i, :, row:row + h, col:col + w] = images[i]
    return out
