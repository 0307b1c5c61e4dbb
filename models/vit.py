"""Vision Transformer: patch tokens + CLS, pre-norm blocks, a linear head; per-layer features for probes."""
from __future__ import annotations

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers import PatchEmbedding, StagedModel, TransformerBlock, check_pooling, pool


@gin.configurable
class ViT(StagedModel):
    """ViT classifier; stem = patches + CLS + positions, stages = blocks, readout = norm + pool.

    `pre_norm` adds a LayerNorm after the embeddings and `activation_name` fixes the blocks'
    activation, as CLIP's image tower has them (pre-LayerNorm, quick-GELU).
    """

    def __init__(self, *, image_size: int, patch_size: int, num_classes: int, channels: int = 3,
                 d_model: int = 64, num_heads: int = 4, num_layers: int = 4, d_ff: int | None = None,
                 dropout: float = 0.0, pooling: str = "cls", pre_norm: bool = False,
                 activation_name: str | None = None) -> None:
        super().__init__()
        require(d_model % num_heads == 0, f"num_heads = {num_heads} does not divide d_model = {d_model}")
        check_pooling(pooling)
        self.pooling = pooling
        self.patches = PatchEmbedding(image_size, patch_size, channels, d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.positions = nn.Parameter(torch.randn(1, self.patches.num_patches + 1, d_model) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.pre_norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()
        self.stages = nn.ModuleList(TransformerBlock(d_model, num_heads, d_ff or 4 * d_model, dropout=dropout,
                                                     activation_name=activation_name)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def stem(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens with the CLS token first and positions added."""
        x = self.patches(images)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pre_norm(self.dropout(x + self.positions))

    def readout(self, hidden: torch.Tensor) -> torch.Tensor:
        return pool(self.norm(hidden), None, self.pooling)
