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


def test_labels_change_a_conditional_model():
    model = FieldDenoiser(coord_dim=2, signal_dim=1, d_model=32, d_latent=32, num_latents=8, num_classes=3)
    cc, _, qc, _, t = inputs()
    zeros_c, zeros_q = torch.zeros(2, 20, 1), torch.zeros(2, 30, 1)
    a = model(cc, zeros_c, qc, zeros_q, t, labels=torch.tensor([0, 0]))["prediction"]
    b = model(cc, zeros_c, qc, zeros_q, t, labels=torch.tensor([1, 3]))["prediction"]  # 3 = unconditional
    assert a.shape == (2, 30, 1) and not torch.allclose(a, b)


def test_the_model_learns_to_read_a_field_from_its_context():
    # Fields f(m) = w . m with a new w per field: only the context tells w, so the loss can
    # fall below the target variance only by reading the context at the right positions.
    # (Variants with small initial latents, or a LayerNorm + zero-initialised Linear output,
    # never left the variance.)
    torch.manual_seed(0)
    model = FieldDenoiser(coord_dim=3, signal_dim=1, d_model=32, d_latent=32, num_latents=16, num_blocks=1,
                          self_attends_per_block=0, num_heads=4, d_ff=64, num_frequencies=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(200):
        w = torch.randn(32, 1, 3, generator=g) * 0.3
        cc = torch.nn.functional.normalize(torch.randn(32, 32, 3, generator=g), dim=-1)
        qc = torch.nn.functional.normalize(torch.randn(32, 16, 3, generator=g), dim=-1)
        target = (qc * w).sum(-1, keepdim=True)
        out = model(cc, (cc * w).sum(-1, keepdim=True), qc, torch.zeros_like(target), torch.zeros(32).long())
        loss = ((out["prediction"] - target) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item() / float(target.var()))
    assert sum(losses[-10:]) / 10 < 0.2


def test_mismatched_dimensions_are_config_errors():
    model = tiny()
    cc, cv, qc, qv, t = inputs()
    with pytest.raises(ConfigError, match="coord_dim"):
        model(cc[..., :1], cv, qc, qv, t)
    with pytest.raises(ConfigError, match="num_heads"):
        FieldDenoiser(d_model=30, num_heads=4)
