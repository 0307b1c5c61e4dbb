"""The hyper_pool benchmark on the flagship config, one short repeat: both timings and their
ratio are printed, for the flagship's pool and generated sub-layers."""
from __future__ import annotations

import re

from launch.benchmarks import hyper_pool


def test_prints_both_timings_and_their_ratio(capsys):
    assert hyper_pool.main(["--steps", "1", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    regenerated = float(re.search(r"every ACT step:\s+([\d.]+) ms", out).group(1))
    held = float(re.search(r"whole forward\s+:\s+([\d.]+) ms", out).group(1))
    ratio = float(re.search(r"ratio held / regenerated ([\d.]+)", out).group(1))
    assert regenerated > 0 and held > 0 and abs(ratio - held / regenerated) < 0.01
    assert "pool 8 x 32, generated attention, ffn" in out
