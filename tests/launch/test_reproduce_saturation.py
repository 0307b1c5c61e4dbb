"""`python launch/reproduce.py saturation` under the study protocol: the smoke budget end to end (every
arm on paired seeds, the claims, the analysis tables and both figures), the cpu and gpu budgets'
plans, and the analysis on results drawn from known curves (a saturating frontier is found, a plateau
is called degenerate, growing returns contradict saturation, a known layer gap is recovered)."""
from __future__ import annotations

import json
import os
import shlex

import numpy as np
import pytest

from launch import tables
from launch.reproductions import _saturation_analysis as analysis
from launch.reproductions import saturation
from launch.study import RECORD, Plan, StudyError


@pytest.mark.slow  # 24 tiny runs with few-shot probes of five sources: ~20 s of CPU
def test_smoke_study_end_to_end(tmp_path):
    runs, out = str(tmp_path / "runs"), str(tmp_path / "results")
    assert saturation.main(["--budget", "smoke", "--workdir", runs, "--out", out, "--threads", "1"]) == 0
    results = json.load(open(os.path.join(out, "saturation", "smoke.json")))
    assert [a["name"] for a in results["arms"]] == [a.name for a in saturation.ARMS]
    arms = {a["name"]: a for a in results["arms"]}
    for arm in results["arms"]:
        assert [r["seed"] for r in arm["runs"]] == [0, 1, 2]
        for row in arm["runs"]:
            metrics = row["metrics"]
            # The layer gap is layer 1 minus the pre-logits, as the run itself logged them.
            logged = [json.loads(line) for line in open(os.path.join(row["workdir"], "metrics.jsonl"))]
            final = [r for r in logged if r.get("split") == "eval"][-1]
            for task in saturation.TASKS:
                key = f"fewshot/{task}/25shot"
                assert metrics[f"eval/{key}"] == final[key]
                assert metrics[f"eval/{key}/first_minus_last"] == pytest.approx(final[f"{key}/layer_1"] - final[key])
            assert {"eval/accuracy", "validation/accuracy"} <= set(metrics)
            words = shlex.split(row["provenance"]["run_command"])
            assert f"train.seed = {row['seed']}" in words  # paired: the seed is the only per-run difference
            assert json.load(open(os.path.join(row["workdir"], RECORD)))["metrics"] == metrics
    # Declared differences only: steps along the chain, and the 10% subset's images.
    assert [arms[f"mixer_small{s}"]["budget"]["steps"] for s in ("_short", "_mid", "")] == [2, 3, 4]
    assert arms["mixer_small_data10"]["budget"]["upstream images"] == 26
    assert arms["mixer_small"]["budget"]["upstream images"] == 256
    operative = open(os.path.join(arms["mixer_small_head_wd"]["runs"][0]["workdir"], "operative_config.gin")).read()
    assert "HEAD_WD = 3.0" in operative
    assert len(results["claims"]) == 2 + 3 * len(saturation.TASKS)
    record = json.load(open(os.path.join(out, "saturation", "smoke_analysis.json")))
    assert set(record["tables"]) == {"frontier", "returns", "holdout", "layers"}
    for table in record["tables"].values():
        assert [row["task"] for row in table["rows"]] == list(saturation.TASKS)
    text = tables.bench_tables(record)
    assert "degenerate" in text and "layer 1 beats the last" in text
    assert record["settings"]["studies"] == ["saturation"] and record["provenance"]["command"]
    for name in ("smoke_saturation.png", "smoke_layers.png"):
        assert os.path.getsize(os.path.join(out, "saturation", name)) > 5000


def test_cpu_and_gpu_budgets_plan_every_arm(tmp_path):
    for budget, seeds, chain in (("cpu", 5, (250, 700, 2000)), ("gpu", 10, (750, 2100, 6000))):
        plan = Plan(saturation.study(), budget, str(tmp_path), "test")
        steps = [plan.measured[f"mixer_small{s}"]["steps"] for s in ("_short", "_mid", "")]
        assert tuple(steps) == chain and len(plan.first_phase()) == seeds * len(saturation.ARMS)
        assert not plan.second_phase()  # nothing is tuned
        assert {m["steps"] for name, m in plan.measured.items() if not saturation.study().arm(name).declared} == \
            {chain[2]}


def test_an_undeclared_difference_stops_the_study(tmp_path):
    import dataclasses
    arms = list(saturation.ARMS)
    arms[-1] = dataclasses.replace(arms[-1], declared={})  # vit_small runs mid length without saying so
    with pytest.raises(StudyError, match="steps"):
        Plan(dataclasses.replace(saturation.study(), arms=tuple(arms)), "cpu", str(tmp_path), "test")


# --- the analysis on results from known curves ------------------------------------------------

SEEDS = (0, 1, 2, 3, 4, 5)
UPSTREAM = (0.1, 0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9)
TASKS = {"near_task": ("near", 6), "far_task": ("far", 4)}


def fake_results(curves: dict, gap: dict[str, float], noise: float = 0.002) -> dict:
    """Results whose 25-shot accuracies follow `curves[task](upstream)`, plus seed noise, with layer 1
    minus the last layer equal to `gap[task]` plus noise."""
    rng = np.random.default_rng(0)
    arms = []
    for index, us in enumerate(UPSTREAM):
        runs = []
        for seed in SEEDS:
            u = us + rng.normal(0, noise)
            metrics = {"eval/accuracy": u}
            for task, curve in curves.items():
                metrics[f"eval/fewshot/{task}/25shot"] = float(curve(u) + rng.normal(0, noise))
                metrics[f"eval/fewshot/{task}/25shot/first_minus_last"] = gap[task] + rng.normal(0, 0.01)
            runs.append({"seed": seed, "metrics": metrics})
        arms.append({"name": f"a{index}", "label": f"arm {index}", "runs": runs})
    return {"report_split": "eval", "budget": {"name": "test", "seeds": list(SEEDS)}, "arms": arms,
            "title": "fake", "study": "fake"}


def analysed(curves: dict, gap: dict[str, float] | None = None) -> dict:
    results = fake_results(curves, gap or {task: 0.0 for task in curves})
    return analysis.analysis_tables(results, tasks={t: TASKS[t] for t in curves}, shots=25, chain=("a1", "a4", "a7"),
                                    layer_arms=("a7", "a3"))


def row(tables_: dict, name: str, task: str) -> dict:
    return next(r for r in tables_[name]["rows"] if r["task"] == task)


def numbers(cell: str) -> list[float]:
    """'+11.8 [+10.1, +13.5] supported' -> [11.8, 10.1, 13.5]."""
    return [float(w) for w in cell.replace("[", " ").replace("]", " ").replace(",", " ").split()[:3]]


def test_a_saturating_frontier_is_found_with_its_saturation_value():
    # e_DS = 0.6 e_US^2 + 0.3: concave in accuracy, flattening towards 1 - e_IR = 0.7.
    found = analysed({"far_task": lambda u: 1 - (0.6 * (1 - u) ** 2 + 0.3)})
    frontier, returns = row(found, "frontier", "far_task"), row(found, "returns", "far_task")
    assert frontier["fitted"] == "6/6" and frontier["verdict"] == "**supported (e_IR > 0)**"
    mean, low, high = numbers(frontier["saturation"])
    assert abs(mean - 70.0) < 0.5 and low <= mean <= high
    assert returns["verdict"] == "**supported**"  # returns fall from short -> mid to mid -> long


def test_a_plateau_is_degenerate_and_never_called_saturation():
    found = analysed({"far_task": lambda u: 0.4 + 0 * u})
    frontier, returns = row(found, "frontier", "far_task"), row(found, "returns", "far_task")
    assert frontier["verdict"].startswith("**inconclusive: degenerate") and "k ~ 0" in frontier["why"]
    assert returns["verdict"].startswith("**inconclusive")


def test_growing_returns_contradict_saturation():
    # e_DS = e_US^0.5: each upstream point buys more downstream accuracy near the top.
    found = analysed({"far_task": lambda u: 1 - (1 - u) ** 0.5})
    assert row(found, "returns", "far_task")["verdict"] == "**contradicted: returns grow**"


def test_a_falling_downstream_is_not_called_saturation_either_way():
    # Upstream gains cost downstream accuracy throughout: returns are negative, then less negative.
    found = analysed({"far_task": lambda u: 0.6 - 0.2 * u ** 0.5})
    assert row(found, "returns", "far_task")["verdict"] == \
        "**inconclusive: downstream falls as upstream improves from short to mid**"
    assert row(found, "frontier", "far_task")["verdict"].startswith("**inconclusive: degenerate")


def test_a_known_layer_gap_is_recovered_and_compared_with_the_near_task():
    found = analysed({"near_task": lambda u: u / 2, "far_task": lambda u: 0.5 + u / 4},
                     gap={"near_task": -0.05, "far_task": 0.12})
    far, near = row(found, "layers", "far_task"), row(found, "layers", "near_task")
    assert numbers(far["a0"])[1] < 12.0 < numbers(far["a0"])[2] and far["a0"].endswith(" supported")
    assert numbers(near["a0"])[1] < -5.0 < numbers(near["a0"])[2] and near["a0"].endswith(" contradicted")
    assert far["far"] == "2/2 arms supported" and near["far"] == "-"


def test_the_validation_split_is_its_own_draw_and_off_by_default():
    from tasks.saturation.upstream import ShapesUpstream
    assert "validation" not in ShapesUpstream(image_size=8, num_examples=32, eval_examples=16).splits
    task = ShapesUpstream(image_size=8, num_examples=32, eval_examples=16, validation_examples=16)
    validation, held_out = task.splits["validation"]["image"], task.splits["eval"]["image"]
    assert len(validation) == 16
    assert not any((image == other).all() for image in validation for other in held_out)
