"""DeepNarrow under the protocol: the claimed pairs really have matched FLOPs (measured, not
assumed); every downstream run fine-tunes its own arm's and seed's pre-trained run, every
learning-rate candidate the same one; a downstream run from another pre-training is refused;
the gpu budget plans; and the smoke command runs end to end into a record the pages render."""
from __future__ import annotations

import copy
import json
import os

import pytest

from launch import study as protocol
from launch import tables
from launch.experiment import parsed_config
from launch.reproductions import deepnarrow
from launch.reproductions._scaling import run_cost
from launch.study import StudyError


def test_deep_narrow_and_wide_pairs_cost_the_same_within_fifteen_percent():
    study = deepnarrow.upstream_study("gpu")
    budget = study.budgets["gpu"]
    flops = {}
    for arm in study.arms:
        with parsed_config([*arm.gin, *study.files], list(budget.bindings)):
            flops[arm.name] = run_cost()["train_flops"]
    for deep, wide in deepnarrow.MATCHED:
        assert 0.85 <= flops[deep] / flops[wide] <= 1.15, (deep, wide, flops[deep] / flops[wide])
        assert deepnarrow.GPU_SHAPES[deep][1] > deepnarrow.GPU_SHAPES[wide][1]  # deeper and narrower
        assert deepnarrow.GPU_SHAPES[deep][2] < deepnarrow.GPU_SHAPES[wide][2]


@pytest.mark.parametrize("budget", ["cpu", "gpu"])
def test_budgets_plan_with_five_seeds_and_one_sweep_for_every_shape(budget, tmp_path):
    upstream = protocol.Plan(deepnarrow.upstream_study(budget), budget, str(tmp_path), "test")
    downstream = protocol.Plan(deepnarrow.downstream_study(budget, str(tmp_path)), budget, str(tmp_path), "test")
    assert len(upstream.budget.seeds) >= 5 and len(downstream.budget.seeds) >= 5
    assert {arm.tune for arm in downstream.study.arms} == {deepnarrow.LR}
    names = {claim.name for claim in downstream.study.claims}
    assert "nl8_dm32_beats_nl2_dm64" in names and "nl2_dm64_beats_nl2_dm48" in names
    widest = "nl2_dm64" if budget == "cpu" else "nl2_dm96"
    assert f"{widest}_beats_nl2_dm16" in names  # every step of the width ladder, and its ends
    # Each candidate of an arm and seed starts from that arm's and seed's pre-trained run.
    for spec in downstream.first_phase():
        [binding] = [b for b in spec["bindings"] if b.startswith("finetune.checkpoint")]
        assert binding.endswith(f"/deepnarrow/upstream/{budget}/{spec['arm']}/default/seed_{spec['seed']}'")


@pytest.mark.slow
def test_smoke_command_fine_tunes_each_seeds_own_pretraining(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    assert deepnarrow.main(["--budget", "smoke", "--workdir", str(runs), "--out", str(out)]) == 0
    upstream = json.load(open(out / "deepnarrow" / "upstream" / "smoke.json"))
    downstream = json.load(open(out / "deepnarrow" / "downstream" / "smoke.json"))
    hashes = {(a["name"], r["seed"]): r["provenance"]["config_hash"] for a in upstream["arms"] for r in a["runs"]}
    assert len(set(hashes.values())) == len(hashes)  # every arm and seed its own pre-training
    for arm in downstream["arms"]:
        for run in arm["runs"]:
            assert run["extra"]["upstream_config_hash"] == hashes[(arm["name"], run["seed"])]
            assert run["report"] == run["metrics"]["eval/accuracy"] and 0 <= run["report"] <= 1
        assert arm["selection"] and arm["selected"]["FINETUNE_LR"] in ("1e-3", "3e-3")
    # Every learning-rate candidate of a tuning seed started from the same pre-trained run.
    seed0 = runs / "deepnarrow" / "downstream" / "smoke" / "nl2_dm32"
    started = {open(candidate / "seed_0" / "topic" / "config.gin").read().split("finetune.checkpoint = \\\n")[1]
               .splitlines()[0] for candidate in seed0.iterdir()}
    assert len(started) == 1 and "upstream/smoke/nl2_dm32/default/seed_0" in started.pop()
    # A downstream row from another pre-training is refused.
    stale = copy.deepcopy(downstream)
    stale["arms"][0]["runs"][0]["extra"]["upstream_config_hash"] = "0" * 16
    with pytest.raises(StudyError, match="another pre-training"):
        deepnarrow.check_upstream(stale, upstream)
    analysis = json.load(open(out / "deepnarrow" / "smoke_analysis.json"))
    text = tables.render([analysis], "bench")
    assert "NL4-DM32" in text and "fine-tuning lr" in text
    assert os.path.getsize(out / "deepnarrow" / "smoke_downstream_vs_flops.png") > 10_000


def test_the_size_check_climbs_the_vanilla_ladder_step_by_step_then_end_to_end():
    names = ["nl8_dm32", "nl2_dm48", "nl2_dm16", "nl2_dm32", "nl4_dm32"]
    assert deepnarrow.size_check(names) == [("nl2_dm32", "nl2_dm16"), ("nl2_dm48", "nl2_dm32"),
                                            ("nl2_dm48", "nl2_dm16")]
    assert deepnarrow.size_check(["nl2_dm32", "nl2_dm48"]) == [("nl2_dm48", "nl2_dm32")]
