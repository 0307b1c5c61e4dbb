"""Patch embedding for vision Transformers: non-overlapping patches -> tokens (a strided conv)."""
from __future__ import annotations

import torch
from torch import nn

from engine.errors import require


class PatchEmbedding(nn.Module):
    """(batch, channels, H, W) images -> (batch, (H/p) * (W/p), d_model) patch tokens."""

    def __init__(self, image_size: int, patch_size: int, channels: int, d_model: int) -> None:
        super().__init__()
        require(image_size % patch_size == 0,
                f"patch_size = {patch_size} does not divide image_size = {image_size}")
        self.image_size = image_size
        self.num_patches = (image_size // patch_size) ** 2
        self.project = nn.Conv2d(channels, d_model, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            from engine.errors import ConfigError
            raise ConfigError(f"images are {tuple(images.shape[-2:])} but the model expects "
                              f"{self.image_size}x{self.image_size}")
        return self.project(images).flatten(2).transpose(1, 2)
