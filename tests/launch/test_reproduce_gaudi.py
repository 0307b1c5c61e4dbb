"""`python launch/reproduce.py gaudi --budget smoke` end to end (tiny rooms, in this process): every arm
of a seed shares one trained auto-decoder, the references are scored by the prior's own code with
every column, the validation draw is kept apart from the test draws the claims pair, and the gpu
budget plans without training."""
from __future__ import annotations

import json
import os

import pytest

from launch import tables
from launch.reproductions import gaudi
from launch.study import RECORD

ARMS = ["unconditional", "conditional", "conditional_w0", "training_latents", "gaussian"]


@pytest.mark.slow
def test_smoke_study_shares_one_autodecoder_and_scores_every_row_alike(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GINTRAIN_CACHE", str(tmp_path / "cache"))  # the tiny rooms
    runs, out = str(tmp_path / "runs"), str(tmp_path / "results")
    argv = ["--budget", "smoke", "--threads", "1", "--workdir", runs, "--out", out]
    assert gaudi.main(argv) == 0
    results = json.load(open(os.path.join(out, "gaudi/rooms/smoke.json")))
    arms = {a["name"]: a for a in results["arms"]}
    assert list(arms) == ARMS and results["draws"] == gaudi.TEST_DRAWS
    assert (results["select_split"], results["report_split"]) == ("validation", "test")

    # One stage-1 folder for the seed, trained once; no arm trained its own; all report the same stage 1.
    assert os.listdir(os.path.join(runs, "gaudi/rooms/smoke/autodecoder")) == ["seed_0"]
    assert not any(os.path.exists(os.path.join(runs, "gaudi/rooms/smoke", arm, "default/seed_0/autodecoder"))
                   for arm in ARMS)
    assert len({json.dumps(arms[a]["runs"][0]["extra"]["stage1"], sort_keys=True) for a in ARMS}) == 1

    for name in ARMS:
        row = arms[name]["runs"][0]
        record = json.load(open(os.path.join(row["workdir"], RECORD)))
        draws = record["extra"]["draws"]
        assert {len(values) for values in draws.values()} == {gaudi.TEST_DRAWS}
        # Every column for every row, the floor accuracy only where a floor colour is asked or known.
        for _, metric, _ in gaudi.COLUMNS:
            assert (f"test/{metric}" in record["metrics"]) == (metric != "label_accuracy" or
                                                               name in ("conditional", "conditional_w0",
                                                                        "training_latents"))
        # The validation draw is draw 0 of the prior's evaluation, the test split the mean of draws 1-5.
        logged = [json.loads(line) for line in open(os.path.join(row["workdir"], "prior", "metrics.jsonl"))]
        final = [r for r in logged if r.get("split") == "eval_train"][-1]
        assert record["metrics"]["validation/kid"] == pytest.approx(final["draw_0/kid"])
        assert draws["test/kid"] == pytest.approx([final[f"draw_{k}/kid"] for k in range(1, gaudi.TEST_DRAWS + 1)])
    # The training-latents reference samples the training latents themselves: nearest distance 0.
    assert arms["training_latents"]["columns"]["NN-train ratio (latents)"]["mean"] == pytest.approx(0, abs=1e-6)
    assert arms["gaussian"]["columns"]["NN-train ratio (latents)"]["mean"] > 0.01

    for claim in results["claims"]:
        assert claim["seeds"] == [[0, k] for k in range(gaudi.TEST_DRAWS)]
        assert claim["verdict"] in ("supported", "contradicted", "inconclusive")
    assert open(os.path.join(out, "gaudi/rooms/smoke.md")).read() == tables.render([results], "full")
    record = json.load(open(os.path.join(out, "gaudi/rooms/smoke_analysis.json")))
    assert "Stage 1" in tables.bench_tables(record) and record["figures"]["seeds"] == 1
    (row,) = record["tables"]["stage1"]["rows"]
    # The cameras look down: straight up is never in view, so it (at least) is not asked.
    assert 1 <= row["asked"] < 26 and 0 <= row["open_above"] <= 1
    assert os.path.exists(os.path.join(out, "gaudi/rooms/smoke_samples_conditional.png"))
    assert os.path.exists(os.path.join(out, "gaudi/rooms/smoke_reconstruction_stage1.png"))

    capsys.readouterr()
    assert gaudi.main(argv) == 0
    assert "run(s) to train" not in capsys.readouterr().out


def test_cpu_and_gpu_budgets_plan(tmp_path, capsys):
    for budget in ("cpu", "gpu"):
        assert gaudi.main(["--budget", budget, "--print-plan", "--workdir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "gaudi/rooms [cpu]: 25 runs" in text and "gaudi/rooms [gpu]: 25 runs" in text
    assert "stage-1 steps 3000" in text and "prior batch 64" in text
    assert not os.listdir(tmp_path)
