"""`python launch/reproduce.py aape --budget smoke` end to end, and the pre-training that keeps the new
classes unseen: the gin-configured pre-training never draws a new class's image nor names one in a
caption; the smoke study (process executor) pre-trains one backbone, points every run at it,
selects on base-class validation only, pairs the seeds across arms, and refuses a backbone made by
another configuration or a split whose new classes the backbone saw."""
from __future__ import annotations

import json
import math
import os
import re
import shlex

import numpy as np
import pytest

from launch import tables
from launch.experiment import parsed_config
from launch.reproductions import aape
from launch.study import RECORD
from tasks.prompting.shape_language import class_name, named_classes

ARMS = ["zeroshot", "coop", "cocoop", "aape"]
T_975_1 = math.tan(math.pi * 0.475)  # Student's t quantile, 1 degree of freedom (2 seeds)


@pytest.mark.slow  # importing scikit-learn for the digits alone takes seconds
def test_pretraining_captions_never_name_a_new_class_but_use_all_of_its_words():
    """The AAPE gin files hold the prompt task's new classes out of pre-training: none of 2000
    pairs shows or names one (synonyms, plurals and shape phrases included), every base class is
    named, and every word of every new class's name still occurs (zero-shot can compose them)."""
    from engine import config
    with parsed_config(["gin/aape/clip_pretrain.gin"], ["IMAGE_SIZE = 12"]):  # small images: a fast draw
        pairs = config.built("train.task")
    with parsed_config(["gin/aape/aape.gin"], []):
        prompts = config.built("train.task")
    new, base = set(prompts.new), set(prompts.base)
    assert set(pairs.held_out) == new and len(new) == 24
    images, captions, drawn = pairs.draw(np.random.default_rng(0), 2000, "train")
    shapes = drawn[drawn[:, 0] >= 0]
    assert len(shapes) > 1400 and not {tuple(k) for k in shapes} & new  # no image of a new class
    named = set().union(*(named_classes(c) for c in captions))
    assert not named & new and named == base
    words = {w for c in captions for w in c.split()}
    assert {w for k in new for w in class_name(*k).split()} <= words


@pytest.mark.slow
def test_smoke_study_end_to_end(tmp_path, capsys, monkeypatch):
    runs, out = str(tmp_path / "runs"), str(tmp_path / "results")
    argv = ["--budget", "smoke", "--shots", "4", "--workdir", runs, "--out", out]
    assert aape.main(argv) == 0
    assert "backbone: pre-training the mini-CLIP" in capsys.readouterr().out
    results = json.load(open(os.path.join(out, "aape/4_shots/smoke.json")))
    arms = {a["name"]: a for a in results["arms"]}
    assert list(arms) == ARMS

    # One backbone, pre-trained once with the new classes held out, loaded by every run.
    folder = os.path.join(runs, "aape", "backbone", "smoke")
    backbone = json.load(open(os.path.join(folder, "backbone.json")))
    assert backbone["held_out_split"] == 0 and backbone["seed"] == aape.BACKBONE_SEED
    from tasks.prompting.prompt_learning import base_new_split
    assert backbone["held_out"] == [class_name(*k) for k in base_new_split(0)[1]]
    assert {"seen_zero_shot_accuracy", "held_out_zero_shot_accuracy"} <= set(backbone["metrics"])
    assert any(backbone["config_hash"] in note and "never saw" in results["notes"][0] for note in results["notes"])
    retrieval = set()
    for arm in results["arms"]:
        assert [r["seed"] for r in arm["runs"]] == [0, 1]
        assert arm["budget"]["backbone"] == os.path.basename(backbone["path"]) and arm["budget"]["base/new split"] == 0
        for row in arm["runs"]:
            record = json.load(open(os.path.join(row["workdir"], RECORD)))
            assert row["report"] == record["metrics"]["base_to_new/harmonic_mean"]
            assert row["select"] == record["metrics"]["base_validation/accuracy"]
            # No run ever evaluates a new-class validation split: selection cannot read its labels.
            assert {key.split("/")[0] for key in record["metrics"]} == {"base_to_new", "base_validation", "retrieval"}
            words = shlex.split(row["provenance"]["run_command"])
            bound = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--bind"]
            assert f"BACKBONE = '{backbone['path']}'" in bound
            # Paired seeds: the seed sets the few-shot draw and the initialisation, for every arm alike.
            assert {f"train.seed = {row['seed']}", f"FewShotBaseToNew.shots_seed = {row['seed']}"} <= set(bound)
            retrieval.add(json.dumps({k: v for k, v in record["metrics"].items() if k.startswith("retrieval/")}))
    assert len(retrieval) == 1  # the same frozen backbone under every arm and seed
    assert {a: arms[a]["budget"]["steps"] for a in ARMS} == {"zeroshot": 3, "coop": 3, "cocoop": 3, "aape": 3}
    assert arms["aape"]["budget"]["report examples"] == 48 and "aape" in arms["aape"]["runs"][0]["workdir"]
    assert set(arms["aape"]["runs"][0]["extra"]) == {"distractor_share", "distractor_share_uniform"}

    # Selection: the better base-validation mean on the tuning seed; nothing else is looked at.
    for name in ARMS[1:]:
        scores = {s["name"]: s["mean"] for s in arms[name]["selection"]}
        assert set(scores) == {"lr=2e-3", "lr=8e-3"}
        assert all(set(s) == {"candidate", "name", "seeds", "base_validation/accuracy", "mean"}
                   for s in arms[name]["selection"])
        best = max(scores, key=lambda n: (scores[n], n == "lr=2e-3"))
        assert arms[name]["selected"] == {"AdamW.lr": best.split("=")[1]}
    assert arms["zeroshot"]["selected"] == {} and results["select_metric"] == "accuracy"

    # Claims, recomputed by hand: two on the harmonic mean, one on new-class accuracy.
    for claim in results["claims"]:
        key = "base_to_new/" + ("new_accuracy" if claim["name"] == "aape_beats_zeroshot_on_new" else "harmonic_mean")
        d = [b["metrics"][key] - w["metrics"][key] for b, w in zip(arms[claim["better"]]["runs"],
                                                                     arms[claim["worse"]]["runs"])]
        mean, half = sum(d) / 2, T_975_1 * abs(d[0] - d[1]) / 2
        assert claim["differences"] == pytest.approx(d) and claim["wins"] == sum(x > 0 for x in d)
        assert claim["difference"]["low"] == pytest.approx(mean - half)
        assert claim["verdict"] == "inconclusive"
    zero_shot = [r["metrics"]["base_to_new/new_accuracy"] for r in arms["zeroshot"]["runs"]]
    assert zero_shot[0] == zero_shot[1]  # a temperature cannot change a prediction, whatever the seed
    for label, metric in (("base (%)", "base_accuracy"), ("new (%)", "new_accuracy")):
        values = [r["metrics"][f"base_to_new/{metric}"] for r in arms["aape"]["runs"]]
        assert arms["aape"]["columns"][label]["mean"] == pytest.approx(sum(values) / 2)
    table = open(os.path.join(out, "aape/4_shots/smoke.md")).read()
    assert table == tables.render([results], "full") and "base_validation accuracy (selects)" in table

    # Again: the backbone and every run are reused, and the results are the same.
    written = os.path.getmtime(os.path.join(folder, "backbone.json"))
    assert aape.main(argv) == 0
    shown = capsys.readouterr().out
    assert "backbone: reusing" in shown and "run(s) to train" not in shown
    assert os.path.getmtime(os.path.join(folder, "backbone.json")) == written
    assert json.load(open(os.path.join(out, "aape/4_shots/smoke.json"))) == results

    # A backbone folder from another pre-training configuration is refused, not reused ...
    monkeypatch.setitem(aape.PRETRAIN, "smoke", aape.PRETRAIN["smoke"] + ("ImageTextPairs.synonym_rate = 0.2",))
    assert aape.main(argv) == 1
    assert re.search(r"holds a backbone pre-trained by another configuration", capsys.readouterr().err)
    monkeypatch.undo()
    # ... and so is a base/new split whose new classes the backbone saw.
    monkeypatch.setattr(aape, "COMMON", aape.COMMON + ("FewShotBaseToNew.split_seed = 1",))
    assert aape.main(argv) == 1
    assert "would not be unseen" in capsys.readouterr().err


def test_every_budget_gives_every_arm_the_same_budget(tmp_path):
    """No training: the declared steps of zero-shot are the only difference at every budget, and the
    cpu budget is the gin files' sizes."""
    from launch.study import Plan
    record = {"path": str(tmp_path / "clip_0.safetensors"), "config_hash": "0", "seed": 0, "held_out_split": 0,
              "held_out": [], "metrics": {"seen_zero_shot_accuracy": 0.0, "held_out_zero_shot_accuracy": 0.0},
              "cpu_s": 0.0, "provenance": {"wall_s": 0.0, "run_command": "-"}}
    for shots in aape.SHOTS:
        for budget in ("smoke", "cpu", "gpu"):
            measured = Plan(aape.study(shots, record), budget, str(tmp_path), "cmd").measured
            assert len({json.dumps({k: v for k, v in m.items() if k != "steps"}) for m in measured.values()}) == 1
            if budget == "cpu":
                assert {a: measured[a]["steps"] for a in ARMS} == {"zeroshot": 1, "coop": 100, "cocoop": 100, "aape": 100}
                assert measured["aape"]["training images"] == f"{shots} per base class x 24"
                assert measured["aape"]["report examples"] == 480 and measured["aape"]["validation examples"] == 240
