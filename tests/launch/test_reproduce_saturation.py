"""`python launch/reproduce.py saturation` end to end at a tiny budget, and its report on records
with a known saturation curve (the fit's parameters must come back in the table)."""
from __future__ import annotations

import argparse
import os

import numpy as np

from launch.reproductions import saturation

TINY = ["ShapesUpstream.num_examples = 128", "ShapesUpstream.eval_examples = 32", "IMAGE_SIZE = 8",
        "ViT.d_model = 16", "WarmupCosine.warmup_steps = 1", "FewShotEvaluator.shots = [1, 2]",
        "FewShotEvaluator.seeds = 1", "FewShotEvaluator.sources = [@CoarseShapes(), @ObjectCount()]",
        "CoarseShapes.pool_per_class = 2", "CoarseShapes.test_per_class = 2",
        "ObjectCount.pool_per_class = 2", "ObjectCount.test_per_class = 2"]


def test_reproduction_trains_the_grid_and_writes_table_and_plots(tmp_path):
    results = str(tmp_path / "results")
    argv = ["--models", "vit_tiny", "--fractions", "1.0", "--steps", "2,3", "--head-wd", "3.0",
            "--out", str(tmp_path / "runs"), "--results", results] + [a for b in TINY for a in ("--extra", b)]
    assert saturation.main(argv) == 0
    table = open(os.path.join(results, "table.md")).read()
    assert table.count("| vit_tiny | ") == 3 + 2 + 1  # runs, best-layer rows per task, head-wd pair
    assert "| vit_tiny | 0.01 -> 3 |" in table and "--steps 2,3" in table
    for task in ("coarse_shape", "object_count"):
        for kind in ("saturation", "layers"):
            assert os.path.getsize(os.path.join(results, f"{task}_{kind}.png")) > 1000


def fake_record(index: int, us: float, e_ir: float) -> dict:
    """A sweep record whose 25-shot accuracies follow e_DS = 0.5 e_US^1.5 + e_IR on pre-logits."""
    ds = 1 - (0.5 * (1 - us) ** 1.5 + e_ir)
    upstream = {"accuracy": us}
    for task in ("coarse_shape", "digits"):
        for shots in (1, 25):
            upstream[f"fewshot/{task}/{shots}shot"] = ds - (0.1 if shots == 1 else 0.0)
            upstream[f"fewshot/{task}/{shots}shot/layer_1"] = ds / 2
            upstream[f"fewshot/{task}/{shots}shot/layer_2"] = ds - (0.1 if shots == 1 else 0.0)
    model = ("vit_tiny", "mixer_small")[index % 2]
    return {"name": f"run{index}", "axes": {"MODEL": model, "ShapesUpstream.data_fraction": "1.0",
                                            "train.steps": str(100 + index), "HEAD_WD": "0.01"},
            "upstream": upstream, "batch_size": 64, "parameters": 1000, "workdir": f"/nonexistent/run{index}"}


def test_report_recovers_a_known_saturation_curve(tmp_path):
    records = [fake_record(i, us, 0.2) for i, us in enumerate(np.linspace(0.1, 0.9, 10))]
    args = argparse.Namespace(results=str(tmp_path), models="vit_tiny,mixer_small", fractions="1.0", steps="100",
                              head_wd="")
    saturation.report([saturation.summarize(r) for r in records], args, records, 0.0)
    table = open(os.path.join(str(tmp_path), "table.md")).read()
    # Points on a convex-in-error curve are all hull vertices (Spearman 1); the fit returns k, alpha, e_IR
    # and is not degenerate.
    assert "| coarse_shape | near | 25 | 0.784 | 1.00 | 10 | 0.50 | 1.50 | 0.200 | 0.800 | 0.000 | no | 0.000 | 0.000 |" in table
    assert "| digits | mixer_small | 2 | 2 | " in table  # the last of two layers is the best here
