"""The DPF denoiser: context order does not matter, queries are independent and permute with
their outputs, and outputs at shared coordinates do not change with the query resolution."""
from __future__ import annotations

import pytest
import torch

from engine.errors import ConfigError
from models.dpf import FieldDenoiser
from models.layers.fourier import FourierFeatures


def tiny(**overrides) -> FieldDenoiser:
    torch.manual_seed(0)
    settings = dict(coord_dim=2, signal_dim=3, d_model=32, num_latents=8, d_latent=32, num_blocks=2,
                    self_attends_per_block=1, num_heads=4, num_frequencies=4)
    model = FieldDenoiser(**{**settings, **overrides}).eval()
    for param in model.output.parameters():  # the output starts at zero; make it informative
        torch.nn.init.normal_(param, std=0.5)
    return model


def corner_grid(n: int) -> torch.Tensor:
    """n x n points -1 + 2 i / n: the 16 x 16 grid is every other point of the 32 x 32 one."""
    axis = -1 + 2 * torch.arange(n, dtype=torch.float32) / n
    return torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1).reshape(-1, 2)


def inputs(batch=2, contexts=20, queries=30, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, contexts, 2, generator=g) * 2 - 1, torch.randn(batch, contexts, 3, generator=g),
            torch.rand(batch, queries, 2, generator=g) * 2 - 1, torch.randn(batch, queries, 3, generator=g),
            torch.randint(0, 1000, (batch,), generator=g))


def test_permuting_the_context_leaves_outputs_unchanged():
    model = tiny()
    cc, cv, qc, qv, t = inputs()
    order = torch.randperm(cc.shape[1], generator=torch.Generator().manual_seed(2))
    a = model(cc, cv, qc, qv, t)["prediction"]
    b = model(cc[:, order], cv[:, order], qc, qv, t)["prediction"]
    assert torch.allclose(a, b, atol=1e-5)
    assert a.abs().mean() > 0.1  # not trivially constant


def test_permuting_queries_permutes_outputs_the_same_way():
    model = tiny()
    cc, cv, qc, qv, t = inputs()
    order = torch.randperm(qc.shape[1], generator=torch.Generator().manual_seed(3))
    a = model(cc, cv, qc, qv, t)["prediction"]
    b = model(cc, cv, qc[:, order], qv[:, order], t)["prediction"]
    assert torch.allclose(a[:, order], b, atol=1e-6)


def test_the_output_at_one_query_does_not_depend_on_the_others():
    model = tiny()
    cc, cv, qc, qv, t = inputs()
    alone = model(cc, cv, qc[:, :1], qv[:, :1], t)["prediction"]
    changed_qv = qv.clone()
    changed_qv[:, 1:] = torch.randn_like(changed_qv[:, 1:]) * 5
    together = model(cc, cv, qc, changed_qv, t)["prediction"]
    assert torch.allclose(alone, together[:, :1], atol=1e-6)
    # ...while it does depend on its own value, its coordinate and the context.
    assert not torch.allclose(model(cc, cv, qc, qv + 1, t)["prediction"], model(cc, cv, qc, qv, t)["prediction"])
    assert not torch.allclose(model(cc, cv + 1, qc, qv, t)["prediction"], model(cc, cv, qc, qv, t)["prediction"])


def test_outputs_at_shared_coordinates_agree_on_16x16_and_32x32_query_grids():
    model = tiny()
    cc, cv, _, _, t = inputs(batch=1)
    fine = corner_grid(32)
    coarse_index = torch.arange(32 * 32).reshape(32, 32)[::2, ::2].reshape(-1)
    assert torch.equal(fine[coarse_index], corner_grid(16))
    values = torch.randn(1, 32 * 32, 3, generator=torch.Generator().manual_seed(4))
    fine_out = model(cc, cv, fine[None], values, t)["prediction"]
    coarse_out = model(cc, cv, corner_grid(16)[None], values[:, coarse_index], t)["prediction"]
    assert torch.allclose(fine_out[:, coarse_index], coarse_out, atol=1e-6)
    # Decoding in chunks changes nothing either.
    assert torch.allclose(model(cc, cv, fine[None], values, t, chunk=100)["prediction"], fine_out, atol=1e-6)


def test_fourier_features_of_a_point_do_not_depend_on_the_point_set():
    features = FourierFeatures(2, 3)
    points = torch.rand(10, 2)
    assert features.out_dim == 2 * 7 and features(points).shape == (10, 14)
    assert torch.equal(features(points[:3]), features(points)[:3])
    assert torch.allclose(features(torch.tensor([[0.5, 0.0]]))[0, 2], torch.tensor(1.0))  # sin(pi / 2)


def test_initial_prediction_is_zero_and_labels_change_a_conditional_model():
    model = FieldDenoiser(coord_dim=2, signal_dim=1, d_model=32, d_latent=32, num_latents=8, num_classes=3)
    cc, _, qc, _, t = inputs()
    out = model(cc, torch.randn(2, 20, 1), qc, torch.randn(2, 30, 1), t)["prediction"]
    assert out.shape == (2, 30, 1) and torch.count_nonzero(out) == 0
    torch.nn.init.normal_(model.output.weight)
    a = model(cc, torch.zeros(2, 20, 1), qc, torch.zeros(2, 30, 1), t, labels=torch.tensor([0, 0]))["prediction"]
    b = model(cc, torch.zeros(2, 20, 1), qc, torch.zeros(2, 30, 1), t, labels=torch.tensor([1, 3]))["prediction"]
    assert not torch.allclose(a, b)


def test_mismatched_dimensions_are_config_errors():
    model = tiny()
    cc, cv, qc, qv, t = inputs()
    with pytest.raises(ConfigError, match="coord_dim"):
        model(cc[..., :1], cv, qc, qv, t)
    with pytest.raises(ConfigError, match="num_heads"):
        FieldDenoiser(d_model=30, num_heads=4)
