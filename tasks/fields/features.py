"""A small classifier trained once on a field source's training pool, whose penultimate layer is
the feature space for KID and precision/recall (a stand-in for Inception on synthetic data).

The task owns this fixed network (docs/design.md): it is trained deterministically on first use,
cached per source, and never updated by the run being evaluated.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tasks.fields.sources.base import FieldSource
from tasks.common.fixed_classifier import train_fixed_classifier

FEATURE_DIM = 64
_CACHE: dict[tuple, "FeatureNet"] = {}


class FeatureNet(nn.Module):
    """Conv blocks (2D or 3D grids) or an MLP (point lists) -> 64 features -> class logits."""

    def __init__(self, layout: str, channels: int, inputs: int, num_classes: int) -> None:
        super().__init__()
        if layout == "points":
            self.body = nn.Sequential(nn.Linear(inputs, 256), nn.ReLU(), nn.Linear(256, FEATURE_DIM), nn.ReLU())
        elif layout == "grid2d":
            self.body = nn.Sequential(nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(32, FEATURE_DIM, 3, padding=1), nn.ReLU(), nn.Flatten(2))
        else:  # 3D: strided convolutions, so it still trains in seconds on a CPU
            self.body = nn.Sequential(nn.Conv3d(channels, 16, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv3d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv3d(32, FEATURE_DIM, 3, padding=1), nn.ReLU(), nn.Flatten(2))
        self.layout = layout
        self.head = nn.Linear(FEATURE_DIM, num_classes)
        self.accuracy = float("nan")  # on the eval pool, set after training

    def features(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.body(x)
        return hidden if self.layout == "points" else hidden.mean(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def embed(self, inputs: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(features (n, 64), predicted classes (n,)) for inputs laid out by the source."""
        self.eval()
        feats = [self.features(torch.as_tensor(inputs[i:i + batch], dtype=torch.float32))
                 for i in range(0, len(inputs), batch)]
        features = torch.cat(feats)
        return features.double().numpy(), self.head(features).argmax(-1).numpy()


def train_feature_net(source: FieldSource, *, steps: int = 400, batch_size: int = 32, seed: int = 0) -> FeatureNet:
    """Train (or fetch from the cache) the feature classifier of `source`; deterministic.

    It runs on the CPU under its own seeded RNG (tasks.common.fixed_classifier).
    """
    key = source.key() + (steps, batch_size, seed)
    if key in _CACHE:
        return _CACHE[key]
    train, held_out = source.pool("train"), source.pool("eval")
    inputs = torch.as_tensor(source.feature_input(train.values))
    labels = torch.as_tensor(train.labels)
    net = train_fixed_classifier(
        lambda: FeatureNet(source.layout, source.signal_dim, inputs[0].numel(), source.num_classes),
        inputs, labels, steps=steps, batch_size=batch_size, seed=seed, lr=1e-2, one_cycle=True)
    _, predicted = net.embed(source.feature_input(held_out.values))
    net.accuracy = float((predicted == held_out.labels).mean())
    _CACHE[key] = net
    return net
