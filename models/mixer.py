"""MLP-Mixer for images (Tolstikhin et al. 2021): patch tokens, then layers that mix across
patches (token-mixing MLP) and across channels, a LayerNorm, global average pooling, a head.

Built on the shared Mixer layers in models/layers/mixer.py; the StagedModel interface exposes
the pooled representation after every Mixer layer for few-shot probes.
"""
from __future__ import annotations

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers import MixerBlock, PatchEmbedding, StagedModel


@gin.configurable
class MLPMixer(StagedModel):
    """stem = patch embedding, stages = Mixer layers, readout = LayerNorm + mean over patches."""

    def __init__(self, *, image_size: int, patch_size: int, num_classes: int, channels: int = 3,
                 d_model: int = 64, num_layers: int = 4, tokens_hidden: int | None = None,
                 channels_hidden: int | None = None, zero_head: bool = True) -> None:
        super().__init__()
        require(num_layers >= 1, f"MLPMixer.num_layers must be >= 1, got {num_layers}")
        self.patches = PatchEmbedding(image_size, patch_size, channels, d_model)
        tokens = self.patches.num_patches
        self.stages = nn.ModuleList(
            MixerBlock(tokens, d_model, tokens_hidden=tokens_hidden or 2 * tokens,
                       channels_hidden=channels_hidden or 4 * d_model)
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)
        if zero_head:  # as in the Mixer paper
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def stem(self, images: torch.Tensor) -> torch.Tensor:
        return self.patches(images)

    def readout(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(hidden).mean(dim=1)
