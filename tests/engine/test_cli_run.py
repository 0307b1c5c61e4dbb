"""The README's first command, shortened: a real process trains, logs, checkpoints and learns."""
from __future__ import annotations

import os

import pytest

from engine.logging import read_metrics
from tests.helpers import run_cli

pytestmark = pytest.mark.slow


def test_transformer_pvr_from_the_command_line_learns_and_writes_the_run_directory(tmp_path):
    workdir = str(tmp_path / "run")
    result = run_cli(["--gin", "gin/hyperut/transformer_pvr.gin", "--workdir", workdir,
                      "--bind", "train.steps = 300", "--bind", "train.eval_every = 300",
                      "--bind", "train.log_every = 25", "--bind", "TransformerClassifier.d_model = 64",
                      "--bind", "TransformerClassifier.num_layers = 2", "--bind", "CPVR.train_hops = (1, 1)",
                      "--bind", "CPVR.eval_hops = (1, 2)", "--bind", "AdamW.lr = 3e-3"])
    assert result.returncode == 0, result.stderr
    for name in ("config.gin", "operative_config.gin", "metrics.jsonl", "tb", "checkpoints/latest"):
        assert os.path.exists(os.path.join(workdir, name)), name
    records = read_metrics(workdir)
    train = [r for r in records if r["split"] == "train"]
    final = [r for r in records if r["split"] == "eval"][-1]
    assert train[-1]["loss"] < 0.7 * train[0]["loss"]
    assert final["accuracy/hops_1"] > 0.3  # majority-class baseline is ~0.16, chance 1/16
    assert "step 300/300" in result.stdout
