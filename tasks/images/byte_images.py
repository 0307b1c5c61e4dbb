"""Image classification over uint8 arrays: a quarter of the memory of float images, which
matters for upstream sets of tens of thousands of images; the model still sees [0, 1] floats.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from tasks.common.arrays import ArrayClassificationTask


class ByteImageClassification(ArrayClassificationTask):
    """Subclasses fill `self.splits[name] = {'image': uint8 (N, C, H, W), 'label': int64 (N,)}`."""

    def forward(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> Any:
        return model(batch["image"].float() / 255.0)

    def epochs(self, steps: int, batch_size: int) -> float:
        """How many passes over the training split `steps` steps of `batch_size` make."""
        return steps * batch_size / len(self.splits["train"]["label"])
