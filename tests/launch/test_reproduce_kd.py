"""`python launch/reproduce.py kd --budget smoke` end to end (the whole study on a 12x12 canvas, in
this process), its results checked against the runs' own records: paired seeds, one teacher per
seed (the CNN arm's next-seed run), selection on the shifted validation digits only, the claims'
paired differences and verdicts; and the test bed's point: the shifted test digits ink only pixels
the training digits ink, where the old bed's do not."""
from __future__ import annotations

import json
import os

import pytest

from launch import provenance, tables
from launch.reproductions import kd
from launch.study import RECORD

ARMS = ["mlp", "mlp_from_mlp", "mlp_from_cnn", "cnn"]


@pytest.mark.slow
def test_smoke_study_end_to_end(tmp_path, capsys):
    runs, out = str(tmp_path / "runs"), str(tmp_path / "results")
    argv = ["--budget", "smoke", "--threads", "1", "--workdir", runs, "--out", out]
    assert kd.main(argv) == 0
    assert "run(s) to train" in capsys.readouterr().out
    results = json.load(open(os.path.join(out, "kd/digits/smoke.json")))
    arms = {a["name"]: a for a in results["arms"]}
    assert list(arms) == ARMS and results["machine"] == f"cpu: {provenance.cpu_model()}"
    assert (results["select_split"], results["report_split"]) == ("translated_validation", "translated")

    for arm in results["arms"]:
        assert [r["seed"] for r in arm["runs"]] == [0, 1]
        for row in arm["runs"]:
            record = json.load(open(os.path.join(row["workdir"], RECORD)))
            assert row["report"] == record["metrics"]["translated/accuracy"]
            assert row["select"] == record["metrics"]["translated_validation/accuracy"]
            assert f"train.seed = {row['seed']}" in row["provenance"]["run_command"]
            assert row["provenance"]["threads"] == 1
    # Each distilled run trained its own teacher from the next seed: MLP <- CNN's teacher at seed 0
    # is the CNN arm's run at seed 1, number for number, on validation and test.
    teacher = arms["mlp_from_cnn"]["runs"][0]["extra"]["teacher"]
    cnn = arms["cnn"]["runs"][1]["metrics"]
    for key in ("translated/accuracy", "translated_validation/accuracy", "eval/accuracy"):
        assert teacher[key] == cnn[key]
    assert all("teacher" in r["extra"] for a in ("mlp_from_mlp", "mlp_from_cnn") for r in arms[a]["runs"])

    # Budgets: the same student steps everywhere, the teacher's declared, the evaluation sizes equal.
    budget = {a: arms[a]["budget"] for a in ARMS}
    assert {b["steps"] for b in budget.values()} == {30}
    assert [budget[a]["teacher steps"] for a in ARMS] == [0, 30, 30, 0]
    assert [budget[a]["teacher"] for a in ARMS] == ["none", "MLP", "SmallCNN", "none"]
    assert {b["report examples"] for b in budget.values()} == {439}
    assert {b["test ink outside training ink"] for b in budget.values()} == {0.0}

    # Selection: every MLP arm's sweep, judged on validation only; the CNN reference is untuned.
    assert arms["cnn"]["selected"] == {} and arms["cnn"]["selection"] == []
    for name in ARMS[:3]:
        scores = {s["name"]: s["mean"] for s in arms[name]["selection"]}
        assert set(scores) == {"lr=3e-3", "lr=1e-2"}
        best = max(scores, key=lambda n: (scores[n], n == "lr=3e-3"))
        assert arms[name]["selected"] == {"AdamW.lr": best.split("=")[1]}
        assert all("translated/accuracy" not in s for s in arms[name]["selection"])

    # Claims: per-seed paired differences of the report metric; two seeds judge nothing.
    assert [c["name"] for c in results["claims"]] == [c.name for c in kd.CLAIMS]
    for claim in results["claims"]:
        better = [r["report"] for r in arms[claim["better"]]["runs"]]
        worse = [r["report"] for r in arms[claim["worse"]]["runs"]]
        assert claim["seeds"] == [0, 1]
        assert claim["differences"] == pytest.approx([b - w for b, w in zip(better, worse)])
        assert claim["wins"] == sum(b > w for b, w in zip(better, worse))
        assert claim["verdict"] == "inconclusive" and claim["reason"].startswith("2 paired seed(s)")
        assert {"difference", "resolution"} <= set(claim)
    assert any("0.00% of the shifted test images" in note for note in results["notes"])
    assert open(os.path.join(out, "kd/digits/smoke.md")).read() == tables.render([results], "full")

    # Again: every run is reused and the results are the same.
    assert kd.main(argv) == 0
    assert "run(s) to train" not in capsys.readouterr().out
    assert json.load(open(os.path.join(out, "kd/digits/smoke.json"))) == results


def bed(files: list[str]):
    from engine import config
    from launch.experiment import parsed_config
    with parsed_config(files, []):
        return config.built("train.task")


def test_covered_bed_shifts_test_digits_only_onto_pixels_training_inks():
    """The study's bed: no shifted test or validation digit puts ink where no training digit
    (at any training offset) does; the old bed (gin/kd/kd_digits.gin) does for most test digits."""
    from tasks.images.digits_canvas import VALIDATION, ink_outside_training
    covered = bed(["gin/kd/kd_mlp.gin", kd.BED])
    for split in ("translated", VALIDATION):
        found = ink_outside_training(covered, split)
        assert found["images_outside"] == 0.0 and found["ink_outside"] == 0.0
        assert found["inked_pixels"] >= found["canvas_pixels"] - 1
    old = ink_outside_training(bed(["gin/kd/kd_mlp.gin"]))
    assert old["images_outside"] > 0.5 and old["ink_outside"] > 0.1 and old["inked_pixels"] < 128
