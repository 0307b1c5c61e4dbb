"""What `train` hands back: `finished` tells a multi-stage program whether to go on, and under a
dry run (`--print-config`) a report instead of a trained model."""
from __future__ import annotations

import os

from engine import config, program
from tests.helpers import REPO, TINY_PVR, SigtermAfterFirstStep, print_config, train_in_process

PVR = os.path.join(REPO, "gin", "hyperut", "transformer_pvr.gin")


def test_a_dry_run_returns_a_report_and_writes_nothing(tmp_path):
    config.reset()
    config.parse([PVR], TINY_PVR)
    result = program.main(str(tmp_path / "run"), dry_run=True)
    assert result.dry_run and not result.finished and result.step == 0 and result.checkpoint is None
    assert result.report.startswith("# parameters: ") and "# strategy: single, 1 rank(s)" in result.report
    assert isinstance(result.model, type(config.built("train.model")))
    assert not os.path.exists(tmp_path / "run")


def test_print_config_of_a_single_stage_run_prints_the_config_then_the_report(tmp_path):
    code, out = print_config(str(tmp_path / "run"), TINY_PVR, files=("gin/hyperut/transformer_pvr.gin",))
    assert code == 0
    head, report = out.split("\n# parameters: ")
    assert "train.steps = " in head and "# stage" not in out
    assert "FLOPs per example" in report and "# strategy: single" in report
    assert not os.path.exists(tmp_path / "run")


def test_finished_only_when_the_run_reached_its_steps(tmp_path):
    workdir = str(tmp_path / "run")
    config.reset()
    config.parse([PVR], TINY_PVR + ["train.steps = 3"])
    stopped = program.train(workdir=workdir, callbacks=[SigtermAfterFirstStep()])
    assert stopped.step == 1 and not stopped.finished and not stopped.dry_run
    resumed = program.train(workdir=workdir)  # the same command again resumes and finishes
    assert resumed.step == 3 and resumed.finished


def test_a_finished_run_started_again_is_still_finished(tmp_path):
    first = train_in_process(str(tmp_path / "run"), TINY_PVR + ["train.steps = 2"])
    again = train_in_process(str(tmp_path / "run"), TINY_PVR + ["train.steps = 2"])
    assert first.finished and again.finished and again.step == 2
