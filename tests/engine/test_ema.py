"""EMA of weights as a callback: the update rule, its warm-up, exact resume through checkpoints,
evaluation of the average beside the live weights, and the exported average."""
from __future__ import annotations

import os
import types

import pytest
import torch

from engine.ema import EMA, EMA_FILE
from engine.errors import ConfigError
from engine.logging import read_metrics
from tests.helpers import TINY_PVR, train_in_process


def fake_trainer(module: torch.nn.Module):
    return types.SimpleNamespace(strategy=types.SimpleNamespace(module=module, is_main=True, shards_parameters=False))


def test_update_is_a_convex_combination_with_the_configured_decay():
    module = torch.nn.Linear(3, 2)
    ema = EMA(decay=0.75, warmup=False)
    trainer = fake_trainer(module)
    ema.on_start(trainer)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        for param in module.parameters():
            param.add_(1.0)
    ema.on_step_end(trainer, 1)
    for name, value in ema.averaged.state_dict().items():
        assert torch.allclose(value, 0.75 * before[name] + 0.25 * (before[name] + 1.0), atol=1e-6)
    assert not any(p.requires_grad for p in ema.averaged.parameters())


def test_warmup_decay_grows_to_the_configured_value():
    ema = EMA(decay=0.999)
    decays = []
    for n in (0, 1, 10, 100000):
        ema.num_updates = n
        decays.append(ema.current_decay())
    assert decays[0] == pytest.approx(0.1) and decays[1] == pytest.approx(2 / 11)
    assert decays == sorted(decays) and decays[-1] == 0.999


def test_average_of_constant_weights_is_those_weights_and_start_step_copies():
    module = torch.nn.Linear(2, 2)
    ema = EMA(decay=0.9, start_step=3)
    trainer = fake_trainer(module)
    ema.on_start(trainer)
    with torch.no_grad():
        module.weight.fill_(2.0)
    ema.on_step_end(trainer, 2)  # before start_step: a plain copy
    assert torch.equal(ema.averaged.weight, module.weight)
    for step in range(4, 30):
        ema.on_step_end(trainer, step)
    assert torch.allclose(ema.averaged.weight, module.weight)


EMA_RUN = TINY_PVR + ["train.callbacks = [@EMA()]", "EMA.decay = 0.9", "train.schedule = @Constant()",
                      "train.checkpoint_every = 10", "train.eval_every = 20"]


def test_resumed_run_ends_with_the_same_average_as_an_uninterrupted_one(tmp_path):
    from safetensors.torch import load_file
    whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
    train_in_process(whole, EMA_RUN + ["train.steps = 20"])
    train_in_process(split, EMA_RUN + ["train.steps = 10"])
    train_in_process(split, EMA_RUN + ["train.steps = 20"])  # resumes at step 10
    a, b = load_file(os.path.join(whole, EMA_FILE)), load_file(os.path.join(split, EMA_FILE))
    assert sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)
    evals = [r for r in read_metrics(whole) if r["split"] == "eval"]
    assert "ema/accuracy" in evals[-1] and "accuracy" in evals[-1]


def test_bad_ema_settings_are_config_errors():
    with pytest.raises(ConfigError, match="decay"):
        EMA(decay=1.0)
    with pytest.raises(ConfigError, match="update_every"):
        EMA(update_every=0)
