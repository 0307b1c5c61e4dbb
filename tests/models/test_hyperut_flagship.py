"""The flagship command, shortened: gin/hyperut/hyperut_pvr.gin trains Hyper-UT on C-PVR and learns."""
from __future__ import annotations

import pytest

from engine.logging import read_metrics
from tests.helpers import train_in_process

pytestmark = pytest.mark.slow

# The flagship file with a smaller model and task so the run takes seconds, not minutes.
SHORT = ["LENGTH = 12", "CPVR.train_hops = (1, 2)", "CPVR.eval_hops = (1, 3)", "CPVR.curriculum_batches = 100",
         "CPVR.eval_examples_per_level = 64", "UniversalTransformerClassifier.d_model = 32",
         "UniversalTransformerClassifier.max_steps = 4", "HyperBlock.d_embed = 16", "AdamW.lr = 3e-3",
         "train.steps = 200", "train.eval_every = 200", "train.log_every = 50", "train.checkpoint_every = 0"]


def test_flagship_hyperut_pvr_beats_chance_on_training_hops(tmp_path):
    workdir = str(tmp_path / "run")
    final = train_in_process(workdir, SHORT, files=("gin/hyperut/hyperut_pvr.gin",)).metrics["eval"]
    train = [r for r in read_metrics(workdir) if r["split"] == "train"]
    assert train[-1]["loss"] < train[0]["loss"] - 0.3
    assert final["accuracy/hops_1"] > 3 / 12  # chance is 1/12, the most frequent label ~0.17
    for name in ("router_entropy", "pool_perplexity", "ponder_cost"):
        assert name in train[-1], name
    assert 1.0 <= final["ponder/hops_1"] <= 4.0
