"""Procedural images of coloured, textured shapes, with their attributes as labels.

One renderer serves every task that needs synthetic images with known factors: many-class
upstream sets (shape x colour x texture x position), captions built from attributes, counting,
and domain shifts (colour, scale, blur). Everything is a pure function of the numpy generator.
"""
from __future__ import annotations

import dataclasses

import numpy as np

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
COLORS = {
    "red": (0.90, 0.15, 0.15), "green": (0.15, 0.75, 0.20), "blue": (0.20, 0.35, 0.95),
    "yellow": (0.95, 0.90, 0.15), "magenta": (0.90, 0.20, 0.85), "cyan": (0.15, 0.85, 0.90),
    "orange": (0.98, 0.55, 0.10), "white": (0.95, 0.95, 0.95),
}
COLOR_NAMES = tuple(COLORS)
TEXTURES = ("solid", "stripes", "checker", "dots")


@dataclasses.dataclass
class Scene:
    """Attributes of a batch of images, each (N, max_objects); -1 marks absent objects."""

    shape: np.ndarray
    color: np.ndarray
    texture: np.ndarray
    x: np.ndarray       # centre, fraction of the width
    y: np.ndarray
    scale: np.ndarray   # half-size, fraction of the width
    count: np.ndarray   # (N,)


def sample_scenes(rng: np.random.Generator, n: int, *, max_objects: int = 1, min_objects: int = 1,
                  shapes: int = len(SHAPES), colors: int = len(COLORS), textures: int = len(TEXTURES),
                  scale: tuple[float, float] = (0.18, 0.3), margin: float | None = None) -> Scene:
    """Random attributes: object count uniform in [min_objects, max_objects], the rest uniform."""
    count = rng.integers(min_objects, max_objects + 1, size=n)
    present = np.arange(max_objects)[None, :] < count[:, None]
    size = rng.uniform(*scale, size=(n, max_objects))
    edge = size if margin is None else np.full_like(size, margin)
    x = rng.uniform(edge, 1 - edge)
    y = rng.uniform(edge, 1 - edge)

    def pick(k: int) -> np.ndarray:
        return np.where(present, rng.integers(0, k, size=(n, max_objects)), -1)

    return Scene(shape=pick(shapes), color=pick(colors), texture=pick(textures), x=x, y=y, scale=size, count=count)


def _shape_mask(kind: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test in the object's frame: u, v in units of its half-size."""
    if kind == "circle":
        return u * u + v * v <= 1.0
    if kind == "square":
        return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)
    if kind == "triangle":
        return (v <= 0.8) & (v >= -1.0 + 1.8 * np.abs(u))  # apex up, base at v = 0.8
    if kind == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if kind == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 1.0))
    if kind == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.35)
    raise ValueError(f"unknown shape {kind!r}")


def _texture(kind: str, u: np.ndarray, v: np.ndarray, frequency: float) -> np.ndarray:
    """Brightness multiplier in the object's frame (1 = full colour)."""
    if kind == "solid":
        return np.ones_like(u)
    if kind == "stripes":
        return np.where(np.sin(u * np.pi * frequency) >= 0, 1.0, 0.35)
    if kind == "checker":
        return np.where((np.floor(u * frequency / 2) + np.floor(v * frequency / 2)) % 2 == 0, 1.0, 0.35)
    if kind == "dots":
        fu, fv = (u * frequency / 2) % 1 - 0.5, (v * frequency / 2) % 1 - 0.5
        return np.where(fu * fu + fv * fv <= 0.09, 0.35, 1.0)
    raise ValueError(f"unknown texture {kind!r}")


def render(scene: Scene, size: int = 32, *, background: float = 0.0, frequency: float = 4.0,
           color_shift: np.ndarray | None = None) -> np.ndarray:
    """Draw the scene: (N, 3, size, size) floats in [0, 1]; later objects cover earlier ones.

    `color_shift` (3,) is added to every object colour (a domain shift), then clipped.
    """
    n, objects = scene.shape.shape
    coords = (np.arange(size) + 0.5) / size
    grid_x, grid_y = np.meshgrid(coords, coords)
    images = np.full((n, 3, size, size), background, dtype=np.float32)
    palette = np.array(list(COLORS.values()), dtype=np.float32)
    if color_shift is not None:
        palette = np.clip(palette + np.asarray(color_shift, dtype=np.float32), 0, 1)
    for i in range(n):
        for j in range(objects):
            if scene.shape[i, j] < 0:
                continue
            u = (grid_x - scene.x[i, j]) / scene.scale[i, j]
            v = (grid_y - scene.y[i, j]) / scene.scale[i, j]
            mask = _shape_mask(SHAPES[scene.shape[i, j]], u, v)
            shade = _texture(TEXTURES[scene.texture[i, j]], u, v, frequency)
            colour = palette[scene.color[i, j]][:, None, None] * shade[None]
            images[i][:, mask] = colour[:, mask]
    return images


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (N, C, H, W) images (a domain shift); sigma in pixels."""
    if sigma <= 0:
        return images
    radius = max(1, int(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(images, ((0, 0), (0, 0), (radius, radius), (radius, radius)), mode="edge")
    rows = sum(taps[k] * padded[:, :, k:k + images.shape[2], :] for k in range(len(taps)))
    return sum(taps[k] * rows[:, :, :, k:k + images.shape[3]] for k in range(len(taps))).astype(np.float32)
