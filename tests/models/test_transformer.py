"""The shared attention layer and the Transformer classifier."""
from __future__ import annotations

import torch

from models.layers.attention.multihead import MultiHeadAttention
from models.transformer import TransformerClassifier


def test_padding_does_not_change_outputs_at_real_positions():
    torch.manual_seed(0)
    layer = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    padded = torch.cat([x, torch.randn(2, 3, 16)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3] * 2)
    assert torch.allclose(layer(x), layer(padded, mask)[:, :5], atol=1e-6)


def test_dense_attention_matches_the_textbook_formula():
    torch.manual_seed(0)
    layer = MultiHeadAttention(8, 2).eval()
    x = torch.randn(3, 4, 8)
    q, k, v = (layer.split_heads(proj(x)) for proj in (layer.query, layer.key, layer.value))
    weights = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)  # head_dim 4 -> sqrt = 2
    expected = layer.out((weights @ v).transpose(1, 2).reshape(3, 4, 8))
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_classifier_mean_pooling_ignores_padding():
    torch.manual_seed(0)
    model = TransformerClassifier(vocab_size=10, num_classes=3, max_len=8, d_model=16, num_heads=2,
                                  num_layers=2, pooling="mean", positions="sinusoidal").eval()
    tokens = torch.randint(0, 10, (2, 5))
    padded = torch.cat([tokens, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(2, 5), torch.zeros(2, 3)], dim=1).bool()
    assert torch.allclose(model(tokens)["logits"], model(padded, mask)["logits"], atol=1e-5)


def test_gradients_reach_every_parameter():
    model = TransformerClassifier(vocab_size=10, num_classes=3, max_len=8, d_model=16, num_heads=2, num_layers=2)
    model(torch.randint(0, 10, (4, 8)))["logits"].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
