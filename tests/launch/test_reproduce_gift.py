"""`python launch/reproduce.py gift` end to end at a tiny budget: it writes a table whose numbers
are the runs' numbers, the raw results and both plots, and reuses finished runs."""
from __future__ import annotations

import json
import os
import statistics

from launch.reproductions import gift

TINY = ["RotatedMoons.pool_size = 128", "RotatedMoons.intermediate_pool_size = 32", "RotatedMoons.test_size = 128",
        "MLP.hidden = (8, 8)", "SOURCE_STEPS = 20", "ROUND_STEPS = 5", "ALL_ROUNDS_STEPS = 10", "gift.rounds = 2",
        "train.batch_size = 16", "train.eval_every = 1000", "WarmupCosine.warmup_steps = 2"]


def test_reproduction_writes_the_runs_numbers_and_plots(tmp_path):
    out, runs = str(tmp_path / "out"), str(tmp_path / "runs")
    argv = ["--seeds", "0,1", "--shifts", "moons", "--methods", "st5,gift,oracle", "--workdir", runs, "--out", out]
    argv += [a for b in TINY for a in ("--bind", b)]
    assert gift.main(argv) == 0
    results = json.load(open(os.path.join(out, "results.json")))["target_accuracy"]["moons"]
    assert len(results["gift"]["0"]) == 3 and len(results["st5"]["0"]) == 6 and len(results["oracle"]["0"]) == 1
    assert results["gift"]["0"][0] == results["st5"]["0"][0]  # one shared source model per seed
    table = open(os.path.join(out, "table.md")).read()
    finals = [100 * results["gift"][s][-1] for s in ("0", "1")]
    assert f"| GIFT | {statistics.mean(finals):.1f} ± {statistics.stdev(finals):.1f} |" in table
    assert "moons: source model 20 steps; 2 rounds x 5 steps" in table
    for name in ("target_per_round.png", "domains.png"):
        assert os.path.getsize(os.path.join(out, name)) > 1000
    # Run again: every run is found finished and the numbers are the same.
    assert gift.main(argv) == 0
    assert json.load(open(os.path.join(out, "results.json")))["target_accuracy"]["moons"] == results
