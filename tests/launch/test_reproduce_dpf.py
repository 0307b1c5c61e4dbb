"""`python launch/reproduce.py dpf` end to end at a tiny budget: it trains, scores the EMA weights
and the Gaussian baseline over independent draws, writes the table (mean ± std), every draw's
values and the sample grids, and reuses a finished run."""
from __future__ import annotations

import json
import os

from launch.reproductions import dpf

TINY = ["FieldDiffusion.eval_samples = 8", "FieldDiffusion.grid_fields = 2", "FieldDiffusion.feature_steps = 5",
        "FieldDiffusion.context_points = 16", "FieldDiffusion.query_points = 8", "DDIMSampler.steps = 2",
        "SphereFields.train_fields = 64", "SphereFields.eval_fields = 16", "train.batch_size = 4",
        "FieldDenoiser.d_model = 16", "FieldDenoiser.d_latent = 16", "FieldDenoiser.num_latents = 4",
        "WarmupCosine.warmup_steps = 1"]


def test_reproduction_writes_a_table_with_both_methods_and_a_sample_grid(tmp_path):
    out, runs = str(tmp_path / "out"), str(tmp_path / "runs")
    argv = ["--only", "sphere", "--steps-scale", "0.00025", "--workdir", runs, "--out", out, "--draws", "2"]
    argv += [a for b in TINY for a in ("--bind", b)]
    assert dpf.main(argv) == 0
    table = open(os.path.join(out, "table.md")).read()
    rows = [line for line in table.splitlines() if line.startswith("| sphere |")]
    assert [row.split("|")[2].strip() for row in rows[:2]] == ["DPF (EMA)", "Gaussian fit"]
    assert "| sphere | `gin/dpf/dpf_sphere.gin` | 4 |" in table  # 16000 steps x 0.00025
    assert "| 2 x 8 |" in table
    draws = json.load(open(os.path.join(out, "draws.json")))
    for method, row in zip(("DPF (EMA)", "Gaussian fit"), rows):
        kid = draws[f"sphere/{method}"]["kid"]
        assert len(kid) == 2 and kid[0] != kid[1]  # two different sample sets
        assert row.split("|")[3].strip().startswith(f"{(kid[0] + kid[1]) / 2:.3f} ± ")
    assert os.path.getsize(os.path.join(out, "sphere.png")) > 1000
    assert os.path.exists(os.path.join(runs, "sphere", "ema.safetensors"))
    # Run again: the finished run is evaluated, not trained again, and scores the same.
    weights = open(os.path.join(runs, "sphere", "ema.safetensors"), "rb").read()
    assert dpf.main(argv) == 0
    assert open(os.path.join(runs, "sphere", "ema.safetensors"), "rb").read() == weights
    assert float(open(os.path.join(runs, "sphere", "train_seconds.txt")).read()) > 0
    assert open(os.path.join(out, "table.md")).read().split("| domain | gin")[0].split("\n", 3)[3] == \
        table.split("| domain | gin")[0].split("\n", 3)[3]
