"""Staged models can be stopped after any layer and resumed from the hidden state."""
from __future__ import annotations

import pytest
import torch

from models.cnn import SmallCNN
from models.mlp import MLP
from models.vit import ViT

MODELS = {
    "mlp": (lambda: MLP(input_dim=64, num_classes=10, hidden=(32, 32, 16)), (3, 1, 8, 8)),
    "cnn": (lambda: SmallCNN(channels=1, num_classes=10, widths=(8, 16)), (3, 1, 8, 8)),
    "vit": (lambda: ViT(image_size=8, patch_size=4, channels=1, num_classes=10, d_model=16, num_heads=2,
                        num_layers=2), (3, 1, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_resume_from_any_layer_equals_the_full_forward(name):
    build, shape = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.rand(shape)
    full = model(x)["logits"]
    for layer in range(model.num_stages + 1):
        assert torch.allclose(model.resume(model.hidden(x, layer), layer)["logits"], full, atol=1e-5)
    features = model.features(x)
    assert len(features) == model.num_stages + 1 and torch.allclose(model.head(features["pre_logits"]), full, atol=1e-5)
