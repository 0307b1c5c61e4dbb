"""A run folder belongs to one config: the same command resumes it, a finished run is left as it
is, and a changed binding never silently resumes the old run."""
from __future__ import annotations

import os

import pytest

from engine import config
from engine.errors import ConfigError
from engine.logging import read_metrics
from launch.run import default_workdir, main as run_main
from tests.helpers import REPO, TINY_PVR, train_in_process

PVR = os.path.join(REPO, "gin", "hyperut", "transformer_pvr.gin")
SHORT = TINY_PVR + ["train.steps = 4", "train.eval_every = 4"]


def cli(workdir: str, bindings: list[str], *flags: str) -> int:
    """`launch/run.py` in this process, as a fresh process would start it (no gin state)."""
    config.reset()
    return run_main(["--gin", PVR, "--workdir", workdir, *flags] + [a for b in bindings for a in ("--bind", b)])


def test_running_a_finished_run_again_writes_nothing_and_returns_its_final_evaluation(tmp_path):
    workdir = str(tmp_path / "run")
    first = train_in_process(workdir, SHORT)
    with open(os.path.join(workdir, "metrics.jsonl")) as handle:
        logged = handle.read()
    again = train_in_process(workdir, SHORT)
    with open(os.path.join(workdir, "metrics.jsonl")) as handle:
        assert handle.read() == logged
    assert again.finished and again.step == 4
    assert again.metrics["eval"]["accuracy"] == pytest.approx(float(first.metrics["eval"]["accuracy"]))


def test_a_changed_binding_on_the_same_folder_is_refused_with_the_changed_line(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    assert cli(workdir, SHORT) == 0
    before = {name: open(os.path.join(workdir, name)).read() for name in ("metrics.jsonl", "config.gin")}
    capsys.readouterr()
    assert cli(workdir, SHORT + ["AdamW.lr = 0.01"]) == 2
    err = capsys.readouterr().err
    assert "another config" in err and "now 'AdamW.lr = 0.01'" in err and "--resume-with-new-config" in err
    assert {name: open(os.path.join(workdir, name)).read() for name in before} == before


def test_the_explicit_flag_resumes_with_the_new_config(tmp_path):
    workdir = str(tmp_path / "run")
    assert cli(workdir, SHORT) == 0
    assert cli(workdir, SHORT + ["AdamW.lr = 0.01", "train.steps = 6"], "--resume-with-new-config") == 0
    assert "AdamW.lr = 0.01" in open(os.path.join(workdir, "config.gin")).read()
    assert max(r["step"] for r in read_metrics(workdir)) == 6


def test_a_larger_step_budget_resumes_the_run(tmp_path):
    workdir = str(tmp_path / "run")
    train_in_process(workdir, SHORT)
    result = train_in_process(workdir, SHORT + ["train.steps = 6"])
    assert result.step == 6
    assert [r["step"] for r in read_metrics(workdir) if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_the_default_folder_names_the_bindings_but_not_the_step_budget():
    files = ["gin/hyperut/transformer_pvr.gin"]
    assert default_workdir(files, []) == default_workdir(files, ["train.steps = 10"]) == "runs/transformer_pvr"
    tagged = default_workdir(files, ["AdamW.lr = 1e-2"])
    assert tagged.startswith("runs/transformer_pvr-b") and tagged != default_workdir(files, ["AdamW.lr = 1e-3"])
    assert default_workdir(files, ["AdamW.lr = 1e-2", "train.steps = 5"]) == tagged


def test_a_config_change_is_a_config_error_in_process_too(tmp_path):
    workdir = str(tmp_path / "run")
    train_in_process(workdir, SHORT)
    with pytest.raises(ConfigError, match="another config"):
        train_in_process(workdir, SHORT + ["train.grad_clip = 0.5"])
