"""Vision Transformer: patch tokens + CLS, pre-norm blocks, a linear head; per-layer features for probes."""
from __future__ import annotations

from typing import Sequence

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers.block import TransformerBlock
from models.layers.patches import PatchEmbedding
from models.layers.pooling import check_pooling, pool


@gin.configurable
class ViT(nn.Module):
    """ViT classifier; `features` returns each block's output and the pre-logits."""

    def __init__(self, *, image_size: int, patch_size: int, num_classes: int, channels: int = 3,
                 d_model: int = 64, num_heads: int = 4, num_layers: int = 4, d_ff: int | None = None,
                 dropout: float = 0.0, pooling: str = "cls") -> None:
        super().__init__()
        require(d_model % num_heads == 0, f"num_heads = {num_heads} does not divide d_model = {d_model}")
        check_pooling(pooling)
        self.pooling = pooling
        self.patches = PatchEmbedding(image_size, patch_size, channels, d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.positions = nn.Parameter(torch.randn(1, self.patches.num_patches + 1, d_model) * 0.02)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, num_heads, d_ff or 4 * d_model, dropout=dropout)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens with the CLS token first and positions added."""
        x = self.patches(images)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        return self.dropout(x + self.positions)

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return pool(self.norm(x), None, self.pooling)

    def features(self, images: torch.Tensor, layers: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Pooled representation after each block (`layer_1` ...) plus `pre_logits`."""
        wanted = set(range(1, len(self.blocks) + 1) if layers is None else layers)
        out = {}
        x = self.embed(images)
        for index, block in enumerate(self.blocks, start=1):
            x = block(x)
            if index in wanted:
                out[f"layer_{index}"] = pool(x, None, self.pooling)
        out["pre_logits"] = self.pre_logits(x)
        return out

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.embed(images)
        for block in self.blocks:
            x = block(x)
        return {"logits": self.head(self.pre_logits(x))}
