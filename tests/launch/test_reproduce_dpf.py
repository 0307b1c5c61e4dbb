"""`python launch/reproduce.py dpf --budget smoke --domains sphere` end to end (in this process): every
method is a run of one program scored by one saved feature network, the claims pair (seed, draw)
units, the oracle really is held-out data, a second run reuses every record, and the gpu budget of
every domain plans without training."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from launch import tables
from launch.reproductions import dpf
from launch.study import RECORD


@pytest.mark.slow
def test_smoke_study_scores_every_method_with_one_frozen_network(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GINTRAIN_CACHE", str(tmp_path / "cache"))
    runs, out = str(tmp_path / "runs"), str(tmp_path / "results")
    argv = ["--budget", "smoke", "--domains", "sphere", "--threads", "1", "--workdir", runs, "--out", out]
    assert dpf.main(argv) == 0
    results = json.load(open(os.path.join(out, "dpf/sphere/smoke.json")))
    arms = {a["name"]: a for a in results["arms"]}
    assert list(arms) == ["dpf", "gaussian", "oracle"] and results["draws"] == dpf.DRAWS
    assert (results["select_split"], results["report_split"]) == ("validation", "eval")

    # One feature network, trained once and saved: every row of every arm names the same file.
    digests = {r["extra"]["feature_net"]["sha256"] for a in results["arms"] for r in a["runs"]}
    assert len(digests) == 1
    (path,) = {r["extra"]["feature_net"]["path"] for a in results["arms"] for r in a["runs"]}
    assert path.startswith(str(tmp_path / "cache")) and os.path.exists(path)

    for arm in results["arms"]:
        assert [r["seed"] for r in arm["runs"]] == [0, 1]
        assert arm["summary"]["n"] == 2 * dpf.DRAWS  # (seed, draw) units
        for row in arm["runs"]:
            record = json.load(open(os.path.join(row["workdir"], RECORD)))
            draws = record["extra"]["draws"]["eval/kid"]
            assert len(draws) == dpf.DRAWS and len(set(draws)) == dpf.DRAWS  # independent draws
            assert row["report"] == pytest.approx(np.mean(draws))
            assert os.path.exists(os.path.join(row["workdir"], "samples.npz"))
    # Only DPF trains (the budget declares it); the two seeds of the Gaussian draw different fields.
    assert [arms[a]["budget"]["steps"] for a in ("dpf", "gaussian", "oracle")] == [4, 0, 0]
    gaussian = [r["extra"]["draws"]["eval/kid"] for r in arms["gaussian"]["runs"]]
    assert gaussian[0] != gaussian[1]
    assert os.path.exists(os.path.join(runs, "dpf/sphere/smoke/dpf/lr=1e-3/seed_0/ema.safetensors"))
    assert not os.path.exists(os.path.join(runs, "dpf/sphere/smoke/gaussian/default/seed_0/checkpoints"))

    # The oracle's samples are held-out fields: each one is a field of the holdout pool.
    from launch.experiment import parsed_config
    from engine import config
    with parsed_config(["gin/dpf/dpf_sphere.gin"], list(dpf.SMOKE)):
        source = config.built("train.task").source
    saved = np.load(os.path.join(arms["oracle"]["runs"][0]["workdir"], "samples.npz"))["resolution_384"]
    holdout, test = source.pool("holdout").values, source.pool("eval").values
    assert all(np.any(np.all(holdout == field, axis=(1, 2))) for field in saved)
    assert not any(np.any(np.all(test == field, axis=(1, 2))) for field in saved)

    # Claims: per (seed, draw) paired differences of each claim's metric, its direction applied.
    for claim in results["claims"]:
        key = f"eval/{claim['metric']}"
        better = [v for r in arms[claim["better"]]["runs"] for v in r["extra"]["draws"][key]]
        worse = [v for r in arms[claim["worse"]]["runs"] for v in r["extra"]["draws"][key]]
        sign = 1 if claim["direction"] == "higher" else -1
        assert claim["differences"] == pytest.approx([sign * (b - w) for b, w in zip(better, worse)])
        assert len(claim["seeds"]) == 2 * dpf.DRAWS
    assert open(os.path.join(out, "dpf/sphere/smoke.md")).read() == tables.render([results], "full")
    assert os.path.getsize(os.path.join(out, "dpf/sphere/smoke.png")) > 1000

    # Again: every run is reused, and the results are the same.
    capsys.readouterr()
    assert dpf.main(argv) == 0
    assert "run(s) to train" not in capsys.readouterr().out
    assert json.load(open(os.path.join(out, "dpf/sphere/smoke.json"))) == results


def test_every_budget_of_every_domain_plans(tmp_path, capsys):
    for budget in ("cpu", "gpu"):
        assert dpf.main(["--budget", budget, "--print-plan", "--workdir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "dpf/sphere [cpu]: 15 runs" in text  # 3 arms x 5 training seeds
    # gpu: the learning-rate sweep (2 values) on seed 0, then the chosen rate on seeds 1-4.
    for domain, steps in (("sphere", 16000), ("images", 12000), ("shapes3d", 48000)):
        block = text.split(f"dpf/{domain} [gpu]: 16 runs,")[1]
        assert block.split("\n")[1].split() [:3] == ["dpf:", "steps", f"{steps},"]
    assert not os.listdir(tmp_path)  # planning trains nothing
