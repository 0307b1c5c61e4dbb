"""Embeddings of a diffusion timestep (and an optional class, for classifier-free guidance).

Shared by every denoiser: a sinusoidal signal of the integer step, then Linear + LayerNorm +
GELU; a class embedding with one extra "null" row is added when the model is conditional.
"""
from __future__ import annotations

import torch
from torch import nn

from engine.errors import ConfigError
from models.layers.positions import sinusoid


class TimestepEmbedding(nn.Module):
    """(batch,) integer steps [and (batch,) labels, `num_classes` = null] -> (batch, dim)."""

    def __init__(self, dim: int, *, num_classes: int = 0) -> None:
        super().__init__()
        self.dim = dim
        self.project = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.GELU())
        self.num_classes = num_classes
        self.classes = nn.Embedding(num_classes + 1, dim) if num_classes else None

    def forward(self, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        embedding = self.project(sinusoid(t, self.dim))
        if labels is not None and self.classes is None:
            raise ConfigError("labels were given to an unconditional model: set the model's num_classes "
                              "to the task's number of classes")
        if self.classes is not None:
            if labels is None:  # unconditional use of a conditional model: the null class
                labels = torch.full_like(t, self.num_classes)
            embedding = embedding + self.classes(labels.long())
        return embedding
