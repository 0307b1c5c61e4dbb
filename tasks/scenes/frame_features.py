"""A small CNN trained once on the real frames of a scene set; its penultimate layer is the
feature space in which rendered frames are compared (KID, a stand-in for Inception on synthetic
rooms) and its predictions say whether a conditionally generated scene shows the asked category.

The task owns this fixed network (docs/design.md): trained deterministically on first use under its
own seed, kept per process, never updated by the run it scores.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from models.cnn import SmallCNN
from tasks.common.fixed_classifier import train_fixed_classifier
from tasks.scenes.trajectories import SceneTrajectories

_CACHE: dict[tuple, "FrameClassifier"] = {}


class FrameClassifier:
    """A trained SmallCNN over (H, W, 3) frames: `embed` gives features and predicted classes."""

    def __init__(self, network: SmallCNN, accuracy: float) -> None:
        self.network = network
        self.accuracy = accuracy  # on held-out frames (every fifth trajectory)

    @torch.no_grad()
    def embed(self, frames: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """frames (n, H, W, 3) in [0, 1] -> (features (n, d) float64, predicted classes (n,))."""
        self.network.eval()
        features, classes = [], []
        for start in range(0, len(frames), batch):
            images = torch.as_tensor(np.asarray(frames[start:start + batch]), dtype=torch.float32).permute(0, 3, 1, 2)
            pooled = self.network.features(images)["pre_logits"]
            features.append(pooled.double())
            classes.append(self.network.head(pooled).argmax(-1))
        return torch.cat(features).numpy(), torch.cat(classes).numpy()


def frame_targets(scenes: SceneTrajectories, label: str | None) -> tuple[np.ndarray, int]:
    """Per-trajectory targets: the category `label`, or the trajectory itself when None."""
    if label is None:
        return np.arange(len(scenes)), len(scenes)
    return scenes.label(label), scenes.num_classes[label]


def train_frame_classifier(scenes: SceneTrajectories, label: str | None, *, steps: int = 300, batch_size: int = 64,
                           seed: int = 0) -> FrameClassifier:
    """Train (or fetch) the classifier of `scenes`' frames for `label`; trajectories whose index is
    a multiple of five are held out to report its accuracy (unless `label` is None)."""
    digest = hashlib.sha1(np.ascontiguousarray(scenes.rgb[:, :, ::4, ::4]).tobytes()).hexdigest()
    key = (digest, scenes.rgb.shape, label, steps, batch_size, seed)
    if key in _CACHE:
        return _CACHE[key]
    targets, classes = frame_targets(scenes, label)
    held_out = (np.arange(len(scenes)) % 5 == 0) if label is not None else np.zeros(len(scenes), dtype=bool)
    frames = torch.as_tensor(scenes.rgb[~held_out].reshape(-1, scenes.height, scenes.width, 3)).permute(0, 3, 1, 2)
    labels = torch.as_tensor(np.repeat(targets[~held_out], scenes.frames))
    network = train_fixed_classifier(lambda: SmallCNN(channels=3, num_classes=classes, widths=(16, 32, 32)),
                                     frames, labels, steps=steps, batch_size=batch_size, seed=seed, lr=3e-3)
    classifier = FrameClassifier(network, float("nan"))
    if held_out.any():
        _, predicted = classifier.embed(scenes.rgb[held_out].reshape(-1, scenes.height, scenes.width, 3))
        classifier.accuracy = float((predicted == np.repeat(targets[held_out], scenes.frames)).mean())
    _CACHE[key] = classifier
    return classifier
