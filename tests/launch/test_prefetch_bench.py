"""The prefetch benchmark at a tiny size: both loops' steps/s, their ratio and the loss check are
printed and recorded, and the two loops trained identically."""
from __future__ import annotations

import json
import re

from launch.benchmarks import prefetch


def test_records_both_rates_their_ratio_and_identical_losses(tmp_path, capsys):
    args = ["--steps", "4", "--warm-steps", "1", "--repeats", "1", "--cost", "0.2", "--out", str(tmp_path)]
    assert prefetch.main(args) == 0  # nonzero when the losses differ
    out = capsys.readouterr().out
    ratio = float(re.search(r"ratio prefetch/in-loop\s+: ([\d.]+)", out).group(1))
    assert "losses identical         : True" in out
    figures = json.load(open(tmp_path / "prefetch.json"))["figures"]
    assert abs(figures["ratio"] - figures["prefetch_steps_per_s"] / figures["synchronous_steps_per_s"]) < 1e-9
    assert abs(ratio - figures["ratio"]) < 1e-3 and figures["losses_identical"] == "yes"
    assert figures["decode_ms"] > 0 and figures["synchronous_wait_ms"] > 0
