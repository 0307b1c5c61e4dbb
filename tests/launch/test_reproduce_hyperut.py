"""The Hyper-UT studies at smoke size: C-PVR runs report accuracy beyond the training hops with
the binomial SE sized from the hop counts, ponder claims are judged on their own metric (lower is
better, growth = out-of-range minus in-range ponder), baselines without halting are compared
only with their stated reason, and the image studies count the layers and FLOPs each test image
used."""
from __future__ import annotations

import dataclasses
import json
import os

import pytest

from launch import study as protocol
from launch.reproductions import hyperut
from launch.study import Budget, StudyError


def _small_cpvr() -> protocol.Study:
    """Three arms and the claims between them, each tuned at one point (two seeds, no sweep)."""
    part = hyperut.cpvr_study().only(("transformer", "ut_act", "hyperut"))
    smoke = part.budgets["smoke"]
    one_point = Budget("smoke", seeds=(0, 1), bindings=smoke.bindings,
                       sweep={axis: values[:1] for axis, values in smoke.sweep.items()})
    return dataclasses.replace(part, budgets={"smoke": one_point})


def test_claims_are_declared_fairly():
    study = hyperut.cpvr_study()
    assert {c.name for c in study.claims if c.tuning_note} == {"beats_transformer", "adaptivity_adds_to_modularity"}
    unfair = dataclasses.replace(study.claims[0], tuning_note="")
    with pytest.raises(StudyError, match="same sweep"):
        dataclasses.replace(study, claims=(unfair,))
    for budget in ("cpu", "gpu"):
        assert len(study.budgets[budget].seeds) >= 5


@pytest.mark.slow
def test_cpvr_smoke_study(tmp_path):
    [results] = protocol.run_studies([_small_cpvr()], "smoke", root=str(tmp_path / "runs"), out=str(tmp_path / "out"),
                                     runner=protocol.Runner(log=lambda line: None), command="test")
    arms = {a["name"]: a for a in results["arms"]}
    # Hops 1-6 at 16 examples each: 48 test examples beyond hops 1-3 size the SE; selection reads validation.
    assert arms["hyperut"]["budget"]["report examples"] == 48 and arms["hyperut"]["budget"]["hops trained"] == "1-3"
    assert results["select_split"] == "validation" and results["report_split"] == "eval"
    for name, arm in arms.items():
        for run in arm["runs"]:
            metrics = run["metrics"]
            assert run["report"] == metrics["eval/accuracy/out_of_range"]
            assert run["select"] == metrics["validation/accuracy/out_of_range"]
            if name != "transformer":
                assert metrics["eval/ponder_growth"] == pytest.approx(
                    metrics["eval/ponder/out_of_range"] - metrics["eval/ponder/in_range"])
    # The Transformer has no ponder column; the halting arms do.
    assert "ponder 1-3" not in arms["transformer"]["columns"] and "ponder 1-3" in arms["hyperut"]["columns"]
    claims = {c["name"]: c for c in results["claims"]}
    fewer = claims["fewer_steps_in_range"]
    ponder = {n: {r["seed"]: r["metrics"]["eval/ponder/in_range"] for r in arms[n]["runs"]} for n in ("hyperut", "ut_act")}
    assert fewer["direction"] == "lower" and fewer["differences"] == pytest.approx(
        [ponder["ut_act"][s] - ponder["hyperut"][s] for s in (0, 1)])
    assert claims["beats_transformer"]["tuning_note"] and not claims["modularity_adds_to_adaptivity"]["tuning_note"]
    hyperut.plot_hops(results, str(tmp_path / "hops.png"))
    assert os.path.getsize(tmp_path / "hops.png") > 10_000


@pytest.mark.slow
def test_image_studies_count_layers_and_flops(tmp_path):
    out = tmp_path / "out"
    assert hyperut.main(["--budget", "smoke", "--only", "images", "--workdir", str(tmp_path / "runs"),
                         "--out", str(out)]) == 0
    for name in hyperut.IMAGE_SETS:
        results = json.load(open(out / "hyperut" / name / "smoke.json"))
        arms = {a["name"]: a for a in results["arms"]}
        # The smoke ViT has 2 layers; the halting models use at most their 2 steps; every model costs FLOPs.
        assert arms["vit"]["runs"][0]["metrics"]["eval/layers"] == 2
        for arm in ("uvit", "hyperuvit"):
            assert 1 <= arms[arm]["runs"][0]["metrics"]["eval/layers"] <= 2
        assert all(arm["runs"][0]["metrics"]["eval/mflops"] > 0 for arm in arms.values())
        assert results["claims"] == []
    digits = json.load(open(out / "hyperut" / "digits" / "smoke.json"))
    assert digits["arms"][0]["runs"][0]["metrics"]["validation/accuracy"] >= 0  # the held-out training digits
