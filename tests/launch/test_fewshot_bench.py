"""The few-shot benchmark: a tiny run prints the solver table against scikit-learn and the
evaluator's cost in training steps."""
from __future__ import annotations

from launch.benchmarks import fewshot


def test_tiny_run_prints_both_measurements(capsys):
    assert fewshot.main(["--steps", "2", "--repeats", "1", "--pool-per-class", "1", "--test-per-class", "1",
                         "--widths", "8"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 250 x 9 |"))
    assert len(row.split("|")) == 8 and all(float(cell) > 0 for cell in row.split("|")[2:7])
    assert "one evaluation = " in out and "% to training time" in out
