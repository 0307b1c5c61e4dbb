"""Visual pointer-value retrieval (Zhang et al. 2021) on a 2x2 grid of scikit-learn digits.

The top-left digit is the pointer; the other three cells hold values. Pointer 0-3 selects the
top-right cell, 4-6 the bottom-left and 7-9 the bottom-right (window m = 0); with a window m the
label aggregates m + 1 consecutive value cells from the selected one, as in vector PVR. Train
examples draw digit images from the digits' train half and evaluation from the test half, so
evaluation needs generalisation to unseen handwriting, not only to unseen combinations.
"""
from __future__ import annotations

import gin
import numpy as np
import torch

from engine.data import generated_batches
from engine.errors import require_int
from tasks.images.sources.digits import digits
from tasks.common.levels import LeveledClassificationTask, balanced_levels
from tasks.pvr.vector import aggregate

VALUE_CELLS = 3  # top-right, bottom-left, bottom-right


def window_start(pointers: np.ndarray, window: int) -> np.ndarray:
    """The first value cell (0-based) a pointer digit selects: its tenth of the 3 - m starts."""
    return (pointers * (VALUE_CELLS - window)) // 10


def tile_grid(cells: np.ndarray) -> np.ndarray:
    """(n, 4, C, s, s) cells in reading order -> (n, C, 2s, 2s) images."""
    top = np.concatenate([cells[:, 0], cells[:, 1]], axis=-1)
    bottom = np.concatenate([cells[:, 2], cells[:, 3]], axis=-1)
    return np.concatenate([top, bottom], axis=-2)


@gin.configurable
class VisualPVR(LeveledClassificationTask):
    """10-way classification of 2x2 digit grids (images (1, 2s, 2s)); level = window m (fixed)."""

    level_name = "window"

    def __init__(self, *, window: int = 0, aggregation: str = "mod_sum", cell_size: int = 8,
                 eval_examples_per_level: int = 512) -> None:
        require_int(window, "VisualPVR.window", low=0, high=VALUE_CELLS - 1,
                    hint=f"a 2x2 grid has {VALUE_CELLS} value cells")
        if window == 0 and aggregation != "mod_sum":
            aggregation = "mod_sum"  # one value: every aggregation is the identity
        aggregate(np.zeros((1, 1), dtype=np.int64), aggregation)  # validates the name
        self.window, self.aggregation, self.cell_size = window, aggregation, cell_size
        self.train_levels = self.eval_levels = (window, window)
        self.eval_examples_per_level = eval_examples_per_level
        self.sources = {split: digits(part, size=cell_size) for split, part in (("train", "train"), ("eval", "test"))}
        self.num_classes = 10

    def _make(self, split: str):
        images, labels = self.sources["train" if split == "train" else "eval"]

        def make(rng, size, index):
            chosen = rng.integers(0, len(labels), size=(size, 4))
            cell_digits = labels[chosen]
            starts = window_start(cell_digits[:, 0], self.window)
            columns = 1 + starts[:, None] + np.arange(self.window + 1)[None, :]
            values = np.take_along_axis(cell_digits, columns, axis=1)
            levels = np.full(size, self.window) if split == "train" else balanced_levels(self.eval_levels, size, index)
            return {"image": tile_grid(images[chosen]), "label": aggregate(values, self.aggregation),
                    "level": levels.astype(np.int64), "cells": cell_digits}
        return make

    def batches(self, split, shard):
        return generated_batches(self._make(split), split, shard)

    def forward(self, model: torch.nn.Module, batch: dict):
        return model(batch["image"])
