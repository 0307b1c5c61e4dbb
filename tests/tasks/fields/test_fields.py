"""The DPF task: context and query subsets of one field share one noise tensor, coordinates are
never noised, the loss sees only query noise, the sampler refreshes the context from the noisy
queries, a single field can be overfit, and evaluation scores and draws samples."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from engine import summaries
from engine.errors import ConfigError
from engine.data import Shard
from tasks.common.diffusion import DDIMSampler
from models.dpf import FieldDenoiser
from tasks.fields.sources.images import ShapeFields
from tasks.fields.sources.sphere import SphereFields
from tasks.fields.dpf import FieldDiffusion


def small_task(**overrides) -> FieldDiffusion:
    settings = dict(source=ShapeFields(size=8, train_fields=24, eval_fields=16), context_points=24,
                    query_points=24, eval_samples=0)
    return FieldDiffusion(**{**settings, **overrides})


def tiny_model(signal_dim: int = 3, **overrides) -> FieldDenoiser:
    torch.manual_seed(0)
    settings = dict(coord_dim=2, signal_dim=signal_dim, d_model=32, d_latent=32, num_latents=8, num_blocks=1,
                    self_attends_per_block=1, d_ff=64, num_frequencies=3)
    return FieldDenoiser(**{**settings, **overrides})


def test_context_and_queries_share_noise_and_keep_exact_coordinates():
    task = small_task()
    batch = next(task.batches("train", Shard(batch_size=6, seed=3)))
    grid = torch.as_tensor(task.coordinates(8))
    pool = torch.as_tensor(task.source.pool("train").values)
    shared = 0
    for i in range(6):
        cidx = [int((grid == c).all(-1).nonzero()) for c in batch["context_coords"][i]]
        qidx = [int((grid == c).all(-1).nonzero()) for c in batch["query_coords"][i]]  # exact grid points
        field = int((pool[:, cidx] == batch["context_values"][i]).all(-1).all(-1).nonzero()[0])
        assert torch.equal(pool[field, qidx], batch["query_values"][i])
        for a, c in enumerate(cidx):
            if c in qidx:
                shared += 1
                assert torch.equal(batch["context_noise"][i, a], batch["query_noise"][i, qidx.index(c)])
    assert shared > 0
    # Rank slices of a global batch are that batch, and batch i does not depend on when it is read.
    halves = [next(task.batches("train", Shard(batch_size=6, seed=3, rank=r, world_size=2))) for r in (0, 1)]
    assert torch.equal(torch.cat([h["query_noise"] for h in halves]), batch["query_noise"])


class ZeroModel(nn.Module):
    """Predicts 0 everywhere and records what it was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(()))
        self.calls: list[tuple[torch.Tensor, ...]] = []

    def forward(self, context_coords, context_values, query_coords, query_values, t, labels=None, chunk=None):
        self.calls.append((context_coords, context_values, query_coords, query_values))
        return {"prediction": torch.zeros_like(query_values) + self.bias}


def test_loss_is_the_query_noise_regression_only():
    task = small_task()
    batch = next(task.batches("train", Shard(batch_size=4)))
    loss, _ = task.loss(ZeroModel(), batch)
    assert torch.allclose(loss, (batch["query_noise"] ** 2).mean())
    other = dict(batch, context_noise=torch.randn_like(batch["context_noise"]))
    assert torch.equal(task.loss(ZeroModel(), other)[0], loss)  # context noise is input, not target
    model = ZeroModel()
    task.loss(model, batch)
    context_coords, _, query_coords, _ = model.calls[0]
    assert torch.equal(context_coords, batch["context_coords"]) and torch.equal(query_coords, batch["query_coords"])
    with torch.no_grad():  # a fresh model predicts 0: the loss starts at E[eps^2] = 1
        assert abs(float(task.loss(tiny_model(), next(task.batches("eval", Shard(batch_size=64))))[0]) - 1) < 0.05


def test_sampler_context_is_a_fixed_subset_refreshed_from_the_noisy_queries():
    task = small_task(sampler=DDIMSampler(steps=4, eta=1.0), sample_context_points=10)
    model = ZeroModel()
    task.sample(model, 3, 12, torch.Generator().manual_seed(0))
    first_coords = model.calls[0][0]
    grid = model.calls[0][2][0]
    chosen = [int((grid == c).all(-1).nonzero()) for c in first_coords[0]]
    assert len(model.calls) == 4 and len(set(chosen)) == 10
    for context_coords, context_values, query_coords, query_values in model.calls:
        assert torch.equal(context_coords, first_coords)
        assert query_coords.shape[1] == 144  # the whole 12x12 grid is queried
        assert torch.equal(context_values, query_values[:, chosen])
    assert not torch.equal(model.calls[0][1], model.calls[1][1])


def test_overfitting_a_single_field_drives_the_loss_near_zero():
    task = FieldDiffusion(source=ShapeFields(size=6, train_fields=1, eval_fields=1), context_points=16,
                          query_points=16, eval_samples=0)
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), 1e-2)
    held = next(task.batches("train", Shard(batch_size=256, start=10_000)))
    with torch.no_grad():
        start = float(task.loss(model, held)[0])
    for batch, _ in zip(task.batches("train", Shard(batch_size=64)), range(80)):
        loss, _ = task.loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        end = float(task.loss(model, held)[0])
    assert start > 0.9 and end < 0.12


def test_evaluation_scores_samples_and_draws_them_at_two_resolutions():
    task = small_task(eval_samples=8, grid_fields=4, eval_batches=1, sampler=DDIMSampler(steps=3),
                      feature_steps=5, eval_resolutions=(8, 12))
    metrics = task.evaluate(tiny_model().eval(), "eval", Shard(batch_size=8))
    for name in ("loss", "kid", "precision", "recall", "class_tv", "nn_train", "nn_train_ratio"):
        assert np.isfinite(float(metrics[name])), name
    assert isinstance(metrics["samples_8x8"], summaries.Image)
    assert metrics["samples_12x12_unseen"].pixels.shape[:2] == (2 * 12 + 1, 2 * 12 + 1)
    assert "data_8x8" in metrics


def test_conditional_training_drops_labels_and_guided_sampling_reports_label_accuracy():
    source = ShapeFields(size=8, train_fields=24, eval_fields=16, colors=2, shapes=("circle", "square"))
    task = FieldDiffusion(source=source, context_points=24, query_points=24, eval_samples=8, eval_batches=1,
                          grid_fields=0, sampler=DDIMSampler(steps=2), feature_steps=5, conditional=True,
                          condition_dropout=0.5, guidance_scale=1.5)
    model = tiny_model(num_classes=source.num_classes)
    seen = []
    original = model.time.forward
    model.time.forward = lambda t, labels=None: seen.append(labels.clone()) or original(t, labels)
    task.loss(model.train(), next(task.batches("train", Shard(batch_size=64))))
    assert 0.25 < float((seen[0] == source.num_classes).double().mean()) < 0.75
    metrics = task.evaluate(model.eval(), "eval", Shard(batch_size=8))
    assert 0.0 <= metrics["label_accuracy"] <= 1.0


def test_gaussian_baseline_matches_the_data_mean_and_covariance():
    source = SphereFields(points=64, train_fields=40, eval_fields=8, scale=0.1)  # no clipping at this scale
    task = FieldDiffusion(source=source, context_points=16, query_points=16, eval_samples=0)
    draws = task.gaussian_samples(20_000, np.random.default_rng(0)).reshape(20_000, -1)
    data = source.pool("train").values.reshape(40, -1)
    assert np.abs(draws.mean(0) - data.mean(0)).max() < 0.01
    assert np.abs(np.cov(draws.T) - np.cov(data.T)).max() < 0.01


def test_bad_task_settings_are_config_errors():
    with pytest.raises(ConfigError, match="exceeds the 64 points"):
        small_task(context_points=65)
    with pytest.raises(ConfigError, match="conditional"):
        small_task(guidance_scale=1.0)
    with pytest.raises(ConfigError, match="eval_samples"):
        small_task(eval_samples=3)
    with pytest.raises(ConfigError, match="unconditional model"):
        task = small_task(conditional=True)
        task.loss(tiny_model(), next(task.batches("train", Shard(batch_size=2))))


def test_feature_network_is_trained_once_saved_and_scores_the_same_on_any_thread_count(tmp_path, monkeypatch):
    from tasks.fields import features
    monkeypatch.setenv("GINTRAIN_CACHE", str(tmp_path / "a"))
    monkeypatch.setattr(features, "_CACHE", {})
    task = small_task(eval_samples=8, feature_steps=20)
    samples = task.gaussian_samples(16, np.random.default_rng(0))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        first = task.feature_net()
        scores = task.score(samples, "eval")
        assert os.path.exists(first.path) and first.path.startswith(str(tmp_path / "a"))
        # Another process (an empty memory cache) on one thread loads the saved file: the same net, the same scores.
        monkeypatch.setattr(features, "_CACHE", {})
        torch.set_num_threads(1)
        again = task.feature_net()
        assert again is not first and again.digest == first.digest
        assert task.score(samples, "eval") == scores
        # Trained afresh (another cache) under another thread count: the same weights, since it trains on one thread.
        monkeypatch.setenv("GINTRAIN_CACHE", str(tmp_path / "b"))
        monkeypatch.setattr(features, "_CACHE", {})
        torch.set_num_threads(2)
        fresh = task.feature_net()
    finally:
        torch.set_num_threads(threads)
    assert fresh.path != first.path
    for name, weight in first.state_dict().items():
        assert torch.equal(weight, fresh.state_dict()[name]), name


def test_each_method_draws_from_its_own_source_of_fields():
    source = SphereFields(points=64, train_fields=40, eval_fields=8, validation_fields=8, holdout_fields=12)
    task = FieldDiffusion(source=source, context_points=16, query_points=16, eval_samples=8,
                          sampler=DDIMSampler(steps=2))
    oracle = task.method_samples("oracle", None, 8, seed=3)
    holdout = source.pool("holdout").values
    assert all(any(np.array_equal(field, h) for h in holdout) for field in oracle)
    assert np.array_equal(oracle, task.method_samples("oracle", None, 8, seed=3))  # a draw is its seed's
    assert not np.array_equal(oracle, task.method_samples("oracle", None, 8, seed=4))
    gaussian = task.method_samples("gaussian", None, 8, seed=3)
    assert gaussian.shape == (8, 64, 1) and not any(np.array_equal(g, h) for g in gaussian for h in holdout)
    model = tiny_model(signal_dim=1, coord_dim=3).eval()
    sampled = task.method_samples("dpf", model, 8, seed=3)
    assert sampled.shape == (8, 64, 1) and np.abs(sampled).max() <= 1
    with pytest.raises(ConfigError, match="holdout_fields"):
        task.method_samples("oracle", None, 13, seed=0)
    with pytest.raises(ConfigError, match="unknown field method"):
        task.method_samples("vae", None, 8, seed=0)
