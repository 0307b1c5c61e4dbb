"""The closed-form few-shot probe: primal and dual solves, separable features, shot sampling,
per-layer extraction through forward hooks, and the periodic evaluator inside a real run."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from models.mixer import MLPMixer
from models.resnet import ResNetV2
from models.vit import ViT
from tasks.saturation.fewshot import (FewShotEvaluator, extract_features, fewshot_accuracy, layer_names, probe_accuracy,
                           ridge_weights, sample_shots, signed_one_hot, whiten)
from tasks.saturation.fewshot_sets import CoarseShapes, DigitsFewShot
from tests.helpers import train_in_process


@pytest.mark.parametrize("n, d", [(40, 9), (9, 40)])  # N >= D (primal is auto) and D > N (dual is)
def test_primal_and_dual_solutions_agree_with_each_other_and_a_generic_ridge_solver(n, d):
    from sklearn.linear_model import Ridge
    rng = np.random.default_rng(0)
    x, test = whiten(rng.normal(size=(n, d)) * rng.uniform(0.1, 10, d), rng.normal(size=(5, d)))
    y = signed_one_hot(rng.integers(0, 4, n), 4)
    for l2 in (1e-3, 1.0, 2.0 ** 10):
        primal, dual = ridge_weights(x, y, l2, "primal"), ridge_weights(x, y, l2, "dual")
        generic = Ridge(alpha=l2, fit_intercept=False, solver="cholesky").fit(x, y).coef_.T
        direct = np.linalg.solve(x.T @ x + l2 * np.eye(d + 1), x.T @ y)
        scale = np.abs(direct).max()
        for weights in (primal, dual, ridge_weights(x, y, l2, "auto"), generic):
            assert np.abs(weights - direct).max() <= 1e-6 * max(scale, 1.0)
    assert x[:, -1].tolist() == [100.0] * n and np.allclose(x[:, :-1].mean(0), 0) and np.allclose(x[:, :-1].std(0), 1, atol=1e-3)


def test_targets_are_signed_one_hot():
    assert signed_one_hot(np.array([2, 0]), 3).tolist() == [[-1, -1, 1], [1, -1, -1]]


def test_perfectly_separable_features_give_accuracy_one():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(10, 64)) * 5
    labels = np.repeat(np.arange(10), 40)
    features = means[labels] + rng.normal(size=(400, 64)) * 0.1
    test_labels = np.repeat(np.arange(10), 20)
    test = means[test_labels] + rng.normal(size=(200, 64)) * 0.1
    for shots in (1, 5, 10, 25):
        for l2 in (1.0, 2.0 ** 10):
            assert fewshot_accuracy(features, labels, test, test_labels, 10, shots=shots, seeds=3, l2_reg=l2) == 1.0


def test_uninformative_features_score_near_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 100)
    accuracy = probe_accuracy(rng.normal(size=(400, 16)), labels, rng.normal(size=(4000, 16)),
                              rng.integers(0, 4, 4000), 4, l2_reg=1.0)
    assert 0.2 < accuracy < 0.3


def test_shots_are_drawn_per_class_without_replacement_and_vary_with_the_seed():
    labels = np.repeat(np.arange(3), 10)
    chosen = sample_shots(labels, 3, 4, seed=0)
    assert np.bincount(labels[chosen]).tolist() == [4, 4, 4] and len(set(chosen)) == 12
    assert set(chosen) != set(sample_shots(labels, 3, 4, seed=1))
    with pytest.raises(ConfigError, match="11 examples of class 0"):
        sample_shots(labels, 3, 11, seed=0)


MODELS = {
    "vit": lambda: ViT(image_size=8, patch_size=4, num_classes=7, d_model=16, num_heads=2, num_layers=3),
    "mixer": lambda: MLPMixer(image_size=8, patch_size=4, num_classes=7, d_model=16, num_layers=2, zero_head=False),
    "resnet": lambda: ResNetV2(num_classes=7, width=2, units=(1, 2), norm_groups=4, zero_head=False),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_per_layer_extraction_returns_one_tensor_per_layer_plus_pre_logits(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    images = np.random.default_rng(0).uniform(size=(5, 3, 8, 8)).astype(np.float32)
    names = layer_names(model, None)
    assert names == [f"layer_{k}" for k in range(1, model.num_stages + 1)] + ["pre_logits"]
    with torch.no_grad():
        hooked = extract_features(model, model, images, names, batch_size=2)
        direct = model.features(torch.from_numpy(images))
        logits = model(torch.from_numpy(images))["logits"]
    assert sorted(hooked) == sorted(direct) and len(hooked) == model.num_stages + 1
    for key in names:
        assert hooked[key].shape[0] == 5 and np.allclose(hooked[key], direct[key].numpy(), atol=1e-5)
    assert np.array_equal(hooked["pre_logits"], hooked[f"layer_{model.num_stages}"])
    assert torch.allclose(model.head(torch.from_numpy(hooked["pre_logits"]).float()), logits, atol=1e-5)
    assert layer_names(model, [1]) == ["layer_1", "pre_logits"]
    with pytest.raises(ConfigError, match="out of range"):
        layer_names(model, [0])


def small_evaluator(**overrides) -> FewShotEvaluator:
    settings = dict(sources=[CoarseShapes(pool_per_class=6, test_per_class=5), DigitsFewShot(pool_per_class=5,
                                                                                               test_per_class=4)],
                    image_size=8, shots=(1, 5), seeds=2)
    return FewShotEvaluator(**{**settings, **overrides})


def test_evaluator_scores_every_source_shot_and_layer():
    torch.manual_seed(0)
    model = MODELS["vit"]().eval()
    with torch.no_grad():
        metrics = small_evaluator().evaluate(model, figure=True)
    names = {"coarse_shape", "digits"}
    expected = {f"fewshot/{s}/{k}shot{suffix}" for s in names for k in (1, 5)
                for suffix in ("", "/layer_1", "/layer_2", "/layer_3")}
    assert set(metrics) == expected | {"fewshot/accuracy_vs_layer"}
    assert all(0.0 <= metrics[key] <= 1.0 for key in expected)


def test_evaluator_refuses_bad_settings_before_training():
    with pytest.raises(ConfigError, match="shots"):
        small_evaluator(shots=(0,))
    with pytest.raises(ConfigError, match="fewer than 25 shots"):
        small_evaluator(shots=(25,)).data()
    with pytest.raises(ConfigError, match="repeated names"):
        small_evaluator(sources=[DigitsFewShot(), DigitsFewShot()])
    with pytest.raises(ConfigError, match="solver"):
        small_evaluator(solver="svd")


def test_evaluator_runs_inside_train_and_logs_to_metrics_and_tensorboard(tmp_path):
    workdir = str(tmp_path / "run")
    train_in_process(workdir, [
        "ShapesUpstream.num_examples = 256", "ShapesUpstream.eval_examples = 64", "IMAGE_SIZE = 8",
        "train.steps = 4", "train.batch_size = 16", "train.eval_every = 2", "train.log_every = 2",
        "train.checkpoint_every = 4", "WarmupCosine.warmup_steps = 1", "FewShotEvaluator.shots = [1, 2]",
        "FewShotEvaluator.seeds = 1", "FewShotEvaluator.sources = [@CoarseShapes(), @NoiseLevel()]",
        "CoarseShapes.pool_per_class = 3", "CoarseShapes.test_per_class = 3",
        "NoiseLevel.pool_per_class = 3", "NoiseLevel.test_per_class = 3",
        "ViT.d_model = 16", "ViT.num_layers = 1"],
        files=("gin/saturation/upstream.gin", "gin/saturation/model/vit_tiny.gin"))
    with open(os.path.join(workdir, "metrics.jsonl")) as handle:
        evals = [r for r in map(json.loads, handle) if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [2, 4]
    assert {"accuracy", "fewshot/coarse_shape/2shot", "fewshot/noise_level/1shot/layer_1"} <= set(evals[-1])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(workdir, "tb"), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert "eval/fewshot/noise_level/2shot" in events.Tags()["scalars"]
    assert any("accuracy_vs_layer" in tag for tag in events.Tags()["images"])
