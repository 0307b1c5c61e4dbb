"""The saturation-study families: BiT-style ResNet v2 and the image MLP-Mixer (with ViT, all
StagedModels), and the weight-standardised convolution the ResNet is built from."""
from __future__ import annotations

import pytest
import torch

from engine.errors import ConfigError
from models.layers.standardized_conv import StdConv2d
from models.mixer import MLPMixer
from models.resnet import ResNetV2

MODELS = {
    "resnet": lambda: ResNetV2(num_classes=5, width=2, units=(1, 2, 1), norm_groups=4, zero_head=False),
    "mixer": lambda: MLPMixer(image_size=8, patch_size=2, num_classes=5, d_model=12, num_layers=3, zero_head=False),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_resume_from_any_layer_equals_the_full_forward(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    x = torch.rand(3, 3, 8, 8)
    full = model(x)["logits"]
    assert full.shape == (3, 5)
    for layer in range(model.num_stages + 1):
        assert torch.allclose(model.resume(model.hidden(x, layer), layer)["logits"], full, atol=1e-5)
    features = model.features(x)
    assert len(features) == model.num_stages + 1
    assert torch.allclose(model.head(features["pre_logits"]), full, atol=1e-5)


def test_resnet_units_are_stages_and_groups_halve_the_resolution():
    model = ResNetV2(num_classes=5, width=2, units=(1, 2, 1), norm_groups=4)
    assert model.num_stages == 4
    x = torch.rand(2, 3, 16, 16)
    assert [tuple(model.hidden(x, k).shape[1:]) for k in range(5)] == [
        (8, 16, 16), (8, 16, 16), (16, 8, 8), (16, 8, 8), (32, 4, 4)]
    assert [v.shape[1] for v in model.features(x).values()] == [8, 16, 16, 32, 32]
    assert torch.equal(model(x)["logits"], torch.zeros(2, 5))  # BiT's zero-initialised head


def test_standardised_convolution_ignores_the_scale_and_offset_of_each_filter():
    torch.manual_seed(0)
    conv = StdConv2d(3, 4, kernel_size=3, padding=1, bias=False)
    x = torch.rand(2, 3, 6, 6)
    before = conv(x)
    with torch.no_grad():
        conv.weight.mul_(torch.tensor([3.0, 0.5, 10.0, 1.0]).view(4, 1, 1, 1)).add_(0.7)
    assert torch.allclose(conv(x), before, atol=1e-4)
    weight = conv.standardized_weight()
    assert torch.allclose(weight.mean(dim=(1, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(weight.var(dim=(1, 2, 3), unbiased=False), torch.ones(4), atol=1e-4)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_family_fits_a_small_batch(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 5, (16,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(x)["logits"], y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_bad_shapes_are_config_errors():
    with pytest.raises(ConfigError, match="at least one unit"):
        ResNetV2(num_classes=5, units=())
    with pytest.raises(ConfigError, match="does not divide"):
        MLPMixer(image_size=10, patch_size=4, num_classes=5)
    with pytest.raises(ConfigError, match="expects 8x8"):
        MODELS["mixer"]()(torch.rand(1, 3, 16, 16))
