"""ViT: logits shape, per-layer features, and a clear error for the wrong image size."""
from __future__ import annotations

import pytest
import torch

from engine.errors import ConfigError
from models.vit import ViT


def test_vit_features_return_every_layer_and_pre_logits():
    model = ViT(image_size=16, patch_size=4, channels=1, num_classes=10, d_model=32, num_heads=4, num_layers=3)
    images = torch.rand(2, 1, 16, 16)
    features = model.features(images)
    assert sorted(features) == ["layer_1", "layer_2", "layer_3", "pre_logits"]
    assert all(v.shape == (2, 32) for v in features.values())
    assert model(images)["logits"].shape == (2, 10)
    assert torch.allclose(model.head(features["pre_logits"]), model(images)["logits"], atol=1e-6)


def test_vit_rejects_images_of_the_wrong_size():
    model = ViT(image_size=16, patch_size=4, channels=1, num_classes=10, d_model=32, num_heads=4, num_layers=1)
    with pytest.raises(ConfigError, match="expects 16x16"):
        model(torch.rand(1, 1, 8, 8))
