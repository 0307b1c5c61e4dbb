"""The denoiser of GAUDI's latent prior: a residual MLP over the flattened latent vector,
conditioned on the diffusion step (and optionally a category, with a null class for
classifier-free guidance) through the shared timestep embedding. Latents are short vectors
with no spatial structure, so an MLP is the natural denoiser (the paper leaves it open).
"""
from __future__ import annotations

import gin
import torch
from torch import nn

from engine.errors import require_int
from models.layers import TimestepEmbedding


class _ResidualBlock(nn.Module):
    """h + MLP(LayerNorm(h) + embedding): the step (and class) enter every block."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.SiLU(), nn.Dropout(dropout), nn.Linear(2 * width, width))

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return h + self.mlp(self.norm(h) + embedding)


@gin.configurable
class LatentDenoiser(nn.Module):
    """(x_t (B, latent_dim), t (B,), labels (B,) or None) -> {'prediction': (B, latent_dim)} under the
    diffusion's parameterisation. With `num_classes` > 0, label `num_classes` is the null class."""

    def __init__(self, *, latent_dim: int = gin.REQUIRED, width: int = 256, blocks: int = 3, num_classes: int = 0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        for name, value, low in (("latent_dim", latent_dim, 1), ("width", width, 2), ("blocks", blocks, 1),
                                 ("num_classes", num_classes, 0)):
            require_int(value, f"LatentDenoiser.{name}", low=low)
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.embedding = TimestepEmbedding(width, num_classes=num_classes)
        self.input = nn.Linear(latent_dim, width)
        self.blocks = nn.ModuleList(_ResidualBlock(width, dropout) for _ in range(blocks))
        self.output = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, latent_dim))
        nn.init.zeros_(self.output[-1].weight)  # start by predicting zero: a calm first step
        nn.init.zeros_(self.output[-1].bias)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        embedding = self.embedding(t, labels)
        h = self.input(x_t)
        for block in self.blocks:
            h = block(h, embedding)
        return {"prediction": self.output(h)}
