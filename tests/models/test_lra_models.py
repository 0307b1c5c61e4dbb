"""The LRA classifier heads: [CLS] or mean pooling with or without a [CLS] token, the MLP head,
and the two-tower retrieval model with its shared encoder."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from engine.errors import ConfigError
from models.transformer import TransformerClassifier
from models.two_tower import TwoTowerClassifier


def tower(**overrides) -> TransformerClassifier:
    settings = dict(vocab_size=12, num_classes=2, max_len=16, d_model=16, num_heads=2, num_layers=1,
                    positions="sinusoidal")
    return TransformerClassifier(**{**settings, **overrides})


def test_mean_pooling_without_cls_encodes_exactly_the_tokens():
    torch.manual_seed(0)
    model = tower(pooling="mean", cls_token=False).eval()
    tokens = torch.randint(0, 12, (3, 7))
    states, mask = model.encode(tokens)
    assert states.shape == (3, 7, 16) and mask is None
    assert model.embed.num_embeddings == 12  # no [CLS] row to sit unused
    expected = model.head(states.mean(dim=1))
    assert torch.allclose(model(tokens)["logits"], expected, atol=1e-6)
    with pytest.raises(ConfigError, match="cls_token"):
        tower(pooling="cls", cls_token=False)


def test_mlp_head_is_dense_relu_dense_and_the_default_stays_linear():
    assert isinstance(tower().head, nn.Linear)
    head = tower(head_hidden=(24,)).head
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Linear]
    assert (head[0].in_features, head[0].out_features, head[2].out_features) == (16, 24, 2)


def test_two_tower_shares_one_encoder_and_combines_u_v_product_and_difference():
    torch.manual_seed(0)
    model = TwoTowerClassifier(encoder=lambda: tower(), head_hidden=(8, 4)).eval()
    assert isinstance(model.tower.head, nn.Identity)
    assert model.head[0].in_features == 4 * 16
    a, b = torch.randint(0, 12, (2, 4, 10))
    u, v = model.embed(a), model.embed(b)
    expected = model.head(torch.cat([u, v, u * v, u - v], dim=-1))
    assert torch.allclose(model(a, None, b, None)["logits"], expected, atol=1e-5)
    model(a, None, b, None)["logits"].sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_two_tower_ignores_padding_of_either_document():
    torch.manual_seed(0)
    model = TwoTowerClassifier(encoder=lambda: tower(), head_hidden=(8,)).eval()
    a, b = torch.randint(1, 12, (2, 3, 6))
    full = torch.ones(3, 6, dtype=torch.bool)
    pad_a = torch.cat([a, torch.zeros(3, 4, dtype=torch.long)], 1)
    mask_a = torch.cat([full, torch.zeros(3, 4, dtype=torch.bool)], 1)
    plain = model(a, full, b, full)["logits"]
    padded = model(pad_a, mask_a, b, full)["logits"]  # documents of different widths: two passes
    assert torch.allclose(plain, padded, atol=1e-5)
    with pytest.raises(ConfigError, match="TransformerClassifier"):
        TwoTowerClassifier(encoder=lambda: nn.Linear(2, 2))
