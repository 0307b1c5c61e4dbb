"""The NaN guard: stop with the step and the last good checkpoint, or skip and count."""
from __future__ import annotations

import pytest
import torch

from engine import checkpoint, program
from engine.logging import read_metrics
from engine.optim import Constant
from engine.task import Task
from engine.data import generated_batches
from engine.trainer import NonFiniteError


class PoisonedRegression(Task):
    """Linear regression whose targets are NaN in batches listed in `poisoned`."""

    def __init__(self, poisoned=()):
        self.poisoned = set(poisoned)

    def batches(self, split, shard):
        def make(rng, size, index):
            x = rng.normal(size=(size, 4)).astype("float32")
            y = x.sum(axis=1, keepdims=True).astype("float32")
            if index in self.poisoned:
                y[:] = float("nan")
            return {"x": x, "y": y}
        return generated_batches(make, split, shard)

    def loss(self, model, batch):
        loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
        return loss, {}


def run(tmp_path, poisoned, **kwargs):
    return program.train(task=PoisonedRegression(poisoned), model=lambda: torch.nn.Linear(4, 1), steps=12,
                         batch_size=4, log_every=1, checkpoint_every=5, schedule=Constant(),
                         workdir=str(tmp_path), **kwargs)


def test_nonfinite_stops_naming_step_and_last_checkpoint(tmp_path):
    with pytest.raises(NonFiniteError) as caught:
        run(tmp_path, poisoned={7})  # batch index 7 is step 8
    message = str(caught.value)
    assert "step 8" in message and "step_000005" in message
    assert checkpoint.latest(str(tmp_path)).endswith("step_000005")


def test_nonfinite_skip_mode_skips_and_counts(tmp_path):
    result = run(tmp_path, poisoned={3, 7}, nonfinite="skip")
    assert result.step == 12
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    last = [r for r in read_metrics(str(tmp_path)) if r["split"] == "train"][-1]
    assert last["nonfinite_skipped"] == 2
