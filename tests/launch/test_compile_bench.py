"""The compile benchmark at a tiny size: both runs' rates, their ratio and the loss agreement are
recorded (Inductor compiles the tiny model once: marked slow)."""
from __future__ import annotations

import json

import pytest

from launch.benchmarks import compile as compile_bench

pytestmark = pytest.mark.slow


def test_records_both_rates_and_agreeing_losses(tmp_path):
    args = ["--d-model", "16", "--batch", "8", "--steps", "3", "--warm-steps", "1", "--repeats", "1",
            "--threads", "1", "--out", str(tmp_path)]
    assert compile_bench.main(args) == 0  # nonzero when the losses disagree
    figures = json.load(open(tmp_path / "compile.json"))["figures"]
    assert figures["losses_agree"] == "yes"
    assert abs(figures["ratio"] - figures["compiled_steps_per_s"] / figures["eager_steps_per_s"]) < 1e-9
