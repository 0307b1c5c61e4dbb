"""Scaling laws vs architectures: the matched-compute ranking reads a fixed FLOP grid, so adding an
architecture cannot reorder the others; slopes are fitted per seed; interpolation is exact on a
power law and never extrapolates; every budget plans (the gpu one included) with >= 5 widths and
>= 3 seeds; and the smoke study runs end to end into a record the pages render."""
from __future__ import annotations

import json
import math
import os

import pytest

from launch import study as protocol
from launch import tables
from launch.reproductions import _scaling, scaling_archs


def test_loglog_interpolation_is_exact_on_a_power_law_and_never_extrapolates():
    curve = lambda x: 3.0 * x ** -0.2  # noqa: E731
    pairs = [(x, curve(x)) for x in (1e9, 4e9, 3e10)]
    for x in (1e9, 2.5e9, 1e10, 3e10):
        assert _scaling.loglog_interpolate(pairs, x) == pytest.approx(curve(x), rel=1e-12)
    assert _scaling.loglog_interpolate(pairs, 9e8) is None and _scaling.loglog_interpolate(pairs, 3.1e10) is None


def test_the_compute_grid_is_quarter_decades_fixed_in_advance():
    assert _scaling.log_grid(5e9, 2e10) == pytest.approx([10 ** 9.75, 1e10, 10 ** 10.25])
    # Widening the range adds points; it never moves the ones already there.
    assert set(_scaling.log_grid(5e9, 2e10)) <= set(_scaling.log_grid(1e9, 1e11))


def synthetic(curves: dict[str, tuple[float, float, list[float]]], seeds=(0, 1, 2)) -> dict:
    """Results in the protocol's layout: arch -> (coefficient, alpha, FLOPs per width); seed s adds
    0.01 * s to every loss, so intervals exist and the slopes are known."""
    arms = []
    for arch, (coefficient, alpha, flops) in curves.items():
        for width, x in enumerate(flops):
            runs = [{"seed": s, "report": coefficient * x ** alpha * (1 + 0.01 * s),
                     "extra": {"train_flops": x, "non_embedding_parameters": 1000.0 * (width + 1)}} for s in seeds]
            arms.append({"name": f"{arch}-d{16 * (width + 1)}", "runs": runs})
    return {"arms": arms}


def ranking(results: dict) -> dict[str, list[str]]:
    tables_, _, _ = scaling_archs.analyse(results)
    order: dict[str, list[str]] = {}
    for row in tables_["ranking"]["rows"]:
        order.setdefault(row["gflops"], []).append(row["architecture"])
    return order


def test_adding_an_architecture_does_not_reorder_the_others_or_move_their_compute_points():
    base = {"vanilla": (40.0, -0.15, [1e9, 3e9, 1e10, 3e10]), "switch": (30.0, -0.14, [1.2e9, 4e9, 1.2e10, 4e10])}
    before = ranking(synthetic(base))
    after = ranking(synthetic({**base, "albert": (20.0, -0.1, [3e8, 1e9, 5e10, 2e11])}))
    assert before  # at least one compute point covered by both
    for point, order in before.items():
        assert [a for a in after[point] if a != "albert"] == order


def test_slopes_are_fitted_per_seed_and_summarised_with_an_interval():
    results = synthetic({"vanilla": (40.0, -0.15, [1e9, 3e9, 1e10, 3e10, 1e11]),
                         "mixer": (40.0, -0.05, [1e9, 3e9, 1e10, 3e10, 1e11])})
    tables_, figures, summary = scaling_archs.analyse(results)
    rows = {row["architecture"]: row for row in tables_["fits"]["rows"]}
    # A multiplicative seed offset leaves each seed's slope unchanged: the mean is the true alpha.
    assert rows["vanilla"]["alpha"].startswith("-0.150") and rows["mixer"]["alpha"].startswith("-0.050")
    assert figures["steepest"] == "vanilla" and figures["flattest"] == "mixer"
    assert summary.format(**figures)


@pytest.mark.parametrize("budget", ["cpu", "gpu"])
def test_every_budget_plans_with_five_widths_and_three_seeds(budget, tmp_path):
    study = scaling_archs.study(budget)
    plan = protocol.Plan(study, budget, str(tmp_path), "test")
    assert len(scaling_archs.WIDTHS[budget]) >= 5 and len(study.budgets[budget].seeds) >= 3
    assert len(plan.measured) == len(study.arms) and len({json.dumps(m) for m in plan.measured.values()}) == 1
    archs = {arm.name.rsplit("-d", 1)[0] for arm in study.arms}
    assert "vanilla" in archs and (budget != "gpu" or archs == set(scaling_archs.architectures()))


@pytest.mark.slow
def test_smoke_study_writes_results_fits_and_a_plot(tmp_path):
    out = tmp_path / "out"
    assert scaling_archs.main(["--budget", "smoke", "--workdir", str(tmp_path / "runs"), "--out", str(out)]) == 0
    results = json.load(open(out / "scaling_archs" / "smoke.json"))
    runs = {arm["name"]: arm["runs"] for arm in results["arms"]}
    assert set(runs) == {"vanilla-d16", "vanilla-d24", "switch-d16", "switch-d24"}
    for arch in ("vanilla", "switch"):
        small, large = runs[f"{arch}-d16"][0]["extra"], runs[f"{arch}-d24"][0]["extra"]
        assert large["train_flops"] > small["train_flops"] and large["parameters"] > small["parameters"]
        # Training FLOPs are 3 forward passes x steps x batch.
        assert small["train_flops"] == 3 * small["forward_flops_per_example"] * 4 * 16
    for arm in results["arms"]:
        for run in arm["runs"]:
            assert run["report"] == run["metrics"]["eval/excess_loss"] and math.isfinite(run["report"])
            assert "validation/excess_loss" in run["metrics"]
    analysis = json.load(open(out / "scaling_archs" / "smoke_analysis.json"))
    text = tables.render([analysis], "bench")
    assert "alpha vs FLOPs" in text and "vanilla" in text and "switch" in text
    assert os.path.getsize(out / "scaling_archs" / "smoke_loss_vs_flops.png") > 10_000
