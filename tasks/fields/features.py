"""A small classifier trained once on a field source's training pool, whose penultimate layer is
the feature space for KID and precision/recall (a stand-in for Inception on synthetic data).

The task owns this fixed network (docs/design.md): it is trained once, on one thread (so the
caller's thread count cannot change its weights), saved under the cache folder and read back by
every later run and method, and never updated by the run being evaluated. It embeds on one thread too.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os

import numpy as np
import torch
from torch import nn

from engine.data import frozen
from engine.files import write_atomically
from tasks.common.cache import cache_root
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
        self.accuracy = float("nan")  # on the validation pool, set after training
        self.path, self.digest = "", ""  # the saved weights and their sha256, set once saved or loaded

    def features(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.body(x)
        return hidden if self.layout == "points" else hidden.mean(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def embed(self, inputs: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(features (n, 64), predicted classes (n,)) for inputs laid out by the source."""
        self.eval()
        with one_thread():
            feats = [self.features(torch.as_tensor(inputs[i:i + batch], dtype=torch.float32))
                     for i in range(0, len(inputs), batch)]
            features = torch.cat(feats)
            return features.double().numpy(), self.head(features).argmax(-1).numpy()


@contextlib.contextmanager
def one_thread():
    """Run the block on one torch thread: a reduction split over threads sums in another order,
    and a metric must not depend on the thread count of the process that computes it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def feature_net_path(source: FieldSource, steps: int, batch_size: int, seed: int) -> str:
    """Where the feature network of this source and training recipe is saved (under the cache root)."""
    name = hashlib.sha1(repr(source.key() + (steps, batch_size, seed, FEATURE_DIM)).encode()).hexdigest()[:16]
    return os.path.join(cache_root(), "field_features", f"{type(source).__name__}_{name}.pt")


def train_feature_net(source: FieldSource, *, steps: int = 400, batch_size: int = 32, seed: int = 0) -> FeatureNet:
    """The feature classifier of `source`: from this process's memory, else from its saved file,
    else trained (on the CPU, one thread, under its own seeded RNG: tasks.common.fixed_classifier)
    and saved, so that every run and method scores in the same frozen network.
    """
    key = source.key() + (steps, batch_size, seed)
    if key in _CACHE:
        return _CACHE[key]
    train = source.pool("train")
    inputs = torch.as_tensor(source.feature_input(train.values))
    build = lambda: FeatureNet(source.layout, source.signal_dim, inputs[0].numel(), source.num_classes)  # noqa: E731
    path = feature_net_path(source, steps, batch_size, seed)
    if os.path.exists(path):
        net = frozen(build())
        net.load_state_dict(torch.load(path, weights_only=True))
    else:
        with one_thread():
            net = train_fixed_classifier(build, inputs, torch.as_tensor(train.labels), steps=steps,
                                         batch_size=batch_size, seed=seed, lr=1e-2, one_cycle=True)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        write_atomically(path, buffer.getvalue())
    with open(path, "rb") as handle:
        net.path, net.digest = path, hashlib.sha256(handle.read()).hexdigest()
    validation = source.pool("validation")
    _, predicted = net.embed(source.feature_input(validation.values))
    net.accuracy = float((predicted == validation.labels).mean())
    _CACHE[key] = net
    return net
