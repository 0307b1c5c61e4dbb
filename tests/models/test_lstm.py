"""The LSTM classifier reads the state at the last real token (padding after it changes
nothing), and both sequence classifiers expose per-layer features whose last entry is what
the head reads."""
from __future__ import annotations

import torch

from models.lstm import LSTMClassifier
from models.transformer import TransformerClassifier


def test_padding_after_the_last_real_token_does_not_change_the_lstm():
    torch.manual_seed(0)
    model = LSTMClassifier(vocab_size=12, num_classes=2, d_embed=8, d_hidden=16, num_layers=2).eval()
    tokens = torch.randint(1, 12, (3, 5))
    padded = torch.cat([tokens, torch.randint(1, 12, (3, 4))], dim=1)  # junk after the real tokens
    mask = torch.cat([torch.ones(3, 5, dtype=torch.bool), torch.zeros(3, 4, dtype=torch.bool)], dim=1)
    assert torch.allclose(model(tokens)["logits"], model(padded, mask)["logits"], atol=1e-6)
    shorter = mask.clone()
    shorter[:, 4] = False  # one token fewer: a different answer
    assert not torch.allclose(model(padded, mask)["logits"], model(padded, shorter)["logits"])


def test_features_give_every_layer_and_the_head_input():
    torch.manual_seed(0)
    tokens = torch.randint(1, 12, (4, 6))
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[:2, 4:] = False
    models = [LSTMClassifier(vocab_size=12, num_classes=2, d_embed=8, d_hidden=16, num_layers=2),
              TransformerClassifier(vocab_size=12, num_classes=2, max_len=6, d_model=16, num_heads=2, num_layers=2)]
    for model in models:
        model.eval()
        features = model.features(tokens, mask)
        assert sorted(features) == ["layer_1", "layer_2", "pre_logits"]
        assert all(v.shape == (4, 16) for v in features.values())
        assert torch.allclose(model.head(features["pre_logits"]), model(tokens, mask)["logits"], atol=1e-5)
        assert sorted(model.features(tokens, mask, layers=[2])) == ["layer_2", "pre_logits"]
