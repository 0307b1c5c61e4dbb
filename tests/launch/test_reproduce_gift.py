"""`python launch/reproduce.py gift --budget smoke` end to end: the whole study on tiny two-moons (8
arms, a learning-rate sweep, 2 seeds) through submitit's local executor, then its results checked
against the runs' own records and hand computations: provenance on every row, one starting model
per seed, selection on validation, the paired differences, intervals and verdicts, the generated
table and a marked block; a second invocation reuses every run."""
from __future__ import annotations

import json
import math
import os
import re

import pytest
import torch

from launch import provenance, tables
from launch.reproductions import gift
from launch.study import RECORD

ARMS = ["source", "st1", "st5", "gradual", "gift", "gift_teacher", "balanced", "oracle"]
T_975_1 = math.tan(math.pi * 0.475)  # Student's t quantile, 1 degree of freedom (2 seeds)


@pytest.mark.slow
def test_smoke_study_end_to_end(tmp_path, capsys):
    runs, out = str(tmp_path / "runs"), str(tmp_path / "results")
    argv = ["--budget", "smoke", "--shifts", "moons", "--workdir", runs, "--out", out]
    assert gift.main(argv + ["--executor", "submitit-local", "--tasks-per-job", "8"]) == 0
    assert "submitted job array" in capsys.readouterr().out
    results = json.load(open(os.path.join(out, "gift/moons/smoke.json")))
    arms = {a["name"]: a for a in results["arms"]}
    assert list(arms) == ARMS and results["machine"] == f"cpu: {provenance.cpu_model()}"

    for arm in results["arms"]:
        assert [r["seed"] for r in arm["runs"]] == [0, 1]
        for row in arm["runs"]:
            record = json.load(open(os.path.join(row["workdir"], RECORD)))
            assert row["report"] == record["metrics"]["target/accuracy"]
            assert row["select"] == record["metrics"]["target_validation/accuracy"]
            p = row["provenance"]
            assert p["command"].startswith("python launch/reproduce.py gift --budget smoke --shifts moons")
            assert p["run_command"].startswith("python launch/run.py --gin gin/gift/") and f"train.seed = {row['seed']}" in p["run_command"]
            assert re.fullmatch(r"[0-9a-f]{40}", p["commit"]) and isinstance(p["dirty"], bool)
            assert re.fullmatch(r"[0-9a-f]{16}", p["config_hash"])
            assert p["versions"]["torch"] == torch.__version__ and p["versions"]["cuda"] is None
            assert p["device"] == {"type": "cpu", "name": provenance.cpu_model()}
            assert p["threads"] >= 1 and p["wall_s"] > 0
        # Every adaptation method starts from the source-only model of the same seed.
        if arm["name"] not in ("source", "oracle"):
            assert [r["extra"]["target"][0] for r in arm["runs"]] == [r["report"] for r in arms["source"]["runs"]]
            rounds = 1 if arm["name"] == "st1" else 5
            assert arm["runs"][0]["extra"]["stages"] == ["source", *(f"round_{k}" for k in range(1, rounds + 1))]

    # The budget: 60 source steps, 30 adaptation steps for every method, declared differences shown.
    assert {a: arms[a]["budget"]["steps"] for a in ARMS} == {**{a: 90 for a in ARMS}, "source": 60, "oracle": 60}
    assert arms["gradual"]["budget"]["unlabelled data"].startswith("intermediate_1 32 + ")
    assert arms["gift"]["budget"]["report examples"] == 200

    # Selection: the sweep's better validation mean on the tuning seed; the report is the selected runs' test.
    for name in ARMS[1:]:
        scores = {s["name"]: s["mean"] for s in arms[name]["selection"]}
        assert set(scores) == {"lr=3e-3", "lr=1e-2"}
        best = max(scores, key=lambda n: (scores[n], n == "lr=3e-3"))
        assert arms[name]["selected"] == {"AdamW.lr": best.split("=")[1]}
        assert all("target/accuracy" not in s for s in arms[name]["selection"])

    # Claims: paired differences, their t interval and wins, recomputed by hand.
    for claim in results["claims"]:
        better = [r["report"] for r in arms[claim["better"]]["runs"]]
        worse = [r["report"] for r in arms[claim["worse"]]["runs"]]
        d = [b - w for b, w in zip(better, worse)]
        mean, half = sum(d) / 2, T_975_1 * abs(d[0] - d[1]) / 2  # sd = |d0 - d1| / sqrt 2, over sqrt 2
        assert claim["differences"] == pytest.approx(d)
        assert claim["difference"]["low"] == pytest.approx(mean - half) and claim["difference"]["high"] == pytest.approx(mean + half)
        assert claim["wins"] == sum(x > 0 for x in d)
        assert claim["verdict"] == "inconclusive" and claim["reason"].startswith("2 paired seed(s)")
        p = (sum(better) + sum(worse)) / 4
        assert claim["resolution"]["se"] == pytest.approx(math.sqrt(p * (1 - p) / 200))

    # The generated table, and a marked block regenerated from these results.
    table = open(os.path.join(out, "gift/moons/smoke.md")).read()
    assert table == tables.render([results], "full")
    gift_mean = f"{100 * arms['gift']['summary']['mean']:.1f}"
    assert re.search(rf"\| GIFT \(pair labels\) \| {re.escape(gift_mean)} \[", table)
    page = tables.regenerate("<!-- results:gift/moons/smoke claims -->\n<!-- /results -->", out)
    for claim in results["claims"]:
        assert f"| {claim['text']} |" in page

    # Again, in this process: nothing trains, and the results are the same.
    assert gift.main(argv) == 0
    assert "run(s) to train" not in capsys.readouterr().out
    assert json.load(open(os.path.join(out, "gift/moons/smoke.json"))) == results


@pytest.mark.slow
def test_every_budget_of_every_shift_gives_every_arm_the_same_budget(tmp_path):
    """The declared differences are the only ones, at every budget (no training: the budget check
    runs on the parsed configurations), and the cpu budget's data is what the study states."""
    from launch.study import Plan
    for shift in gift.SHIFTS:
        for budget in ("smoke", "cpu", "gpu"):
            measured = Plan(gift.study(shift), budget, str(tmp_path), "cmd").measured
            adaptation = {measured[a]["steps"] for a in ARMS if a not in ("source", "oracle")}
            assert len(adaptation) == 1 and measured["oracle"]["steps"] == measured["source"]["steps"]
            if budget == "cpu":
                source_steps = 600 if shift == "shapes" else 1000
                assert measured["source"]["steps"] == source_steps
                assert adaptation == {600 + 5 * 200 if shift == "shapes" else 1000 + 5 * 300}
                assert measured["gift"]["report examples"] == {"digits": 359, "digits60": 359, "moons": 2000,
                                                               "shapes": 1500}[shift]
