"""launch/sweep.py: grids of named macros and bindings, records, skipping finished runs."""
from __future__ import annotations

import json
import os

import pytest

import launch.experiment
from launch.sweep import main, parse_axis, plan, sweep
from tests.helpers import REPO

BASE = os.path.join(REPO, "gin", "scaling", "t5_span.gin")
TINY = ["train.steps = 2", "train.batch_size = 4", "train.log_every = 1", "train.eval_every = 2",
        "SpanCorruption.length = 16", "SpanCorruption.eval_batches = 1", "T5.max_input_length = 16",
        "T5.d_ff = 32", "T5.d_kv = 8"]


def test_named_macros_select_gin_files_and_dotted_names_become_bindings():
    runs = plan([BASE], [parse_axis("SIZE=[cpu_d32_l2, tiny]"), parse_axis("AdamW.lr=[1e-3]"),
                         parse_axis("LABEL=[x]")], [])
    assert [r["name"] for r in runs] == ["size-cpu_d32_l2_lr-1e-3_label-x", "size-tiny_lr-1e-3_label-x"]
    assert runs[1]["gin"][-1].endswith(os.path.join("size", "tiny.gin"))
    assert runs[0]["bindings"] == ["AdamW.lr = 1e-3", "LABEL = 'x'"]  # no label/x.gin: a string macro
    with pytest.raises(ValueError, match="NAME="):
        parse_axis("SIZE=tiny")


def test_sweep_records_each_run_once_and_skips_finished_runs(tmp_path, monkeypatch):
    out = str(tmp_path / "sweep")
    grid = [("T5.d_model", ["16", "32"])]
    records = sweep([BASE], grid, TINY + ["T5.num_heads = 2"], out, log=lambda *_: None)
    assert [r["axes"]["T5.d_model"] for r in records] == ["16", "32"]
    assert records[0]["parameters"] < records[1]["parameters"]
    assert records[0]["forward_flops_per_example"] < records[1]["forward_flops_per_example"]
    assert records[0]["upstream"]["step"] == 2 and "bayes_floor" in records[0]["upstream"]

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(launch.experiment, "run_config", must_not_train)
    again = sweep([BASE], grid, TINY + ["T5.num_heads = 2"], out, log=lambda *_: None)
    assert again == records
    with open(os.path.join(out, "records.jsonl")) as handle:
        assert len([json.loads(line) for line in handle]) == 2
    # --collect rebuilds the records from the run directories alone (as after a cluster sweep).
    os.remove(os.path.join(out, "records.jsonl"))
    collected = sweep([BASE], grid, TINY + ["T5.num_heads = 2"], out, collect=True, log=lambda *_: None)
    assert [(r["name"], r["parameters"], r["upstream"]) for r in collected] == \
        [(r["name"], r["parameters"], r["upstream"]) for r in records]


def test_torchrun_mode_prints_one_command_per_unfinished_run(tmp_path, capsys):
    assert main(["--gin", BASE, "--grid", "SIZE=[cpu_d32_l2,cpu_d48_l2]", "--out", str(tmp_path),
                 "--torchrun", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("torchrun --nproc-per-node 4 launch/run.py") for line in lines)
    assert "gin/scaling/size/cpu_d48_l2.gin" in lines[1] and "--workdir" in lines[1]


def test_a_run_stopped_early_stops_the_sweep_without_a_record(tmp_path, monkeypatch):
    from launch.sweep import Interrupted
    real = launch.experiment.run_config

    def stopped_after_one_step(files, bindings, workdir):  # as if SIGTERM arrived after step 1
        return real(files, list(bindings) + ["train.steps = 1"], workdir)
    monkeypatch.setattr(launch.experiment, "run_config", stopped_after_one_step)
    out = str(tmp_path / "sweep")
    with pytest.raises(Interrupted, match="stopped at step 1 of 2"):
        sweep([BASE], [("T5.d_model", ["16", "32"])], TINY + ["T5.num_heads = 2"], out, log=lambda *_: None)
    assert not os.path.exists(os.path.join(out, "records.jsonl"))
    assert not os.path.exists(os.path.join(out, "d_model-32"))  # the second run never started
