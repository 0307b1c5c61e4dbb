"""Single-object shape scenes whose attributes make a class: shape x colour x texture x position
bin, so one renderer gives a many-class upstream set and, with coarser or other labels, the
few-shot tasks near and far from it.

Sets of any size are built in fixed chunks, each from its own seeded generator, so the first n
examples are the same whatever n is: a smaller data fraction is a prefix of a larger one.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from engine.errors import require, require_int
from tasks.images.sources.shapes import COLORS, SHAPES, TEXTURES, Scene, render, sample_scenes

#: How many position bins -> (columns, rows) of the grid the object's centre is placed in.
POSITION_GRIDS = {1: (1, 1), 2: (2, 1), 4: (2, 2)}
CHUNK = 1000


@dataclasses.dataclass(frozen=True)
class Factors:
    """How many values of each attribute are used; a class is one combination of them."""

    shapes: int = len(SHAPES)
    colors: int = len(COLORS)
    textures: int = len(TEXTURES)
    positions: int = 2

    def validate(self, owner: str) -> None:
        for name, most in (("shapes", len(SHAPES)), ("colors", len(COLORS)), ("textures", len(TEXTURES))):
            value = getattr(self, name)
            require_int(value, f"{owner}.{name}", low=1, high=most)
        require(self.positions in POSITION_GRIDS,
                f"{owner}.positions must be one of {sorted(POSITION_GRIDS)}, got {self.positions!r}")

    @property
    def num_classes(self) -> int:
        return self.shapes * self.colors * self.textures * self.positions

    def label(self, scene: Scene, position: np.ndarray) -> np.ndarray:
        """The class index of each single-object scene: ((shape * C + colour) * T + texture) * P + bin."""
        shape, color, texture = scene.shape[:, 0], scene.color[:, 0], scene.texture[:, 0]
        return (((shape * self.colors + color) * self.textures + texture) * self.positions + position).astype(np.int64)


def binned_scenes(rng: np.random.Generator, n: int, factors: Factors, *,
                  scale: tuple[float, float]) -> tuple[Scene, np.ndarray]:
    """One object per scene with uniform attributes, its centre in the middle half of a uniformly
    chosen position bin (kept inside the canvas), so the bin is never ambiguous to the eye."""
    scene = sample_scenes(rng, n, shapes=factors.shapes, colors=factors.colors, textures=factors.textures,
                          scale=scale)
    columns, rows = POSITION_GRIDS[factors.positions]
    position = rng.integers(0, factors.positions, size=n)
    half = scene.scale[:, 0]
    scene.x[:, 0] = np.clip((position % columns + rng.uniform(0.25, 0.75, n)) / columns, half, 1 - half)
    scene.y[:, 0] = np.clip((position // columns + rng.uniform(0.25, 0.75, n)) / rows, half, 1 - half)
    return scene, position


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 (a quarter of the memory for large upstream sets)."""
    return np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)


def chunked(make: Callable[[np.random.Generator, int], dict[str, np.ndarray]], seed: Sequence[int],
            n: int, chunk: int = CHUNK) -> dict[str, np.ndarray]:
    """The first `n` examples of the stream whose chunk c is `make(default_rng([*seed, c]), chunk)`."""
    parts = [make(np.random.default_rng([*seed, c]), chunk) for c in range(-(-n // chunk))]
    return {key: np.concatenate([p[key] for p in parts])[:n] for key in parts[0]}


def labelled_images(rng: np.random.Generator, n: int, factors: Factors, *, image_size: int,
                    scale: tuple[float, float], frequency: float) -> dict[str, np.ndarray]:
    """{'image': uint8 (n, 3, size, size), 'label': fine class, 'shape': coarse class}."""
    scene, position = binned_scenes(rng, n, factors, scale=scale)
    images = render(scene, image_size, frequency=frequency)
    return {"image": to_uint8(images), "label": factors.label(scene, position),
            "shape": scene.shape[:, 0].astype(np.int64)}
