"""Every command that reads a checkpoint takes a run folder (its newest checkpoint) or a
checkpoint folder, through one resolver; a folder without one is a ConfigError that says so."""
import json
import os

import pytest

from engine import checkpoint
from engine.errors import ConfigError
from launch.export import main as export_main


def fake_run(workdir: str, steps: list[int]) -> None:
    """Finished checkpoint folders (a meta.json each) and the `latest` pointer, as `save` leaves them."""
    for step in steps:
        folder = os.path.join(checkpoint.root(workdir), checkpoint.step_dir_name(step))
        os.makedirs(folder)
        with open(os.path.join(folder, checkpoint.META), "w") as handle:
            json.dump({"step": step, "strategy": "single"}, handle)
    with open(os.path.join(checkpoint.root(workdir), checkpoint.LATEST), "w") as handle:
        handle.write(checkpoint.step_dir_name(steps[-1]))


def test_a_run_folder_names_its_latest_checkpoint_and_a_checkpoint_folder_itself(tmp_path):
    run = str(tmp_path / "run")
    fake_run(run, [10, 20])
    assert checkpoint.resolve(run) == os.path.join(run, "checkpoints", "step_000020")
    older = os.path.join(run, "checkpoints", "step_000010")
    assert checkpoint.resolve(older) == older


def test_a_folder_without_a_finished_checkpoint_is_a_config_error(tmp_path, capsys):
    empty = str(tmp_path / "empty")
    os.makedirs(empty)
    with pytest.raises(ConfigError, match=r"^distill\.teacher_weights = '.*empty' holds no finished checkpoint: "
                                          r"give a run folder .*; a \.safetensors export works too$"):
        checkpoint.resolve(empty, name="distill.teacher_weights", hint="a .safetensors export works too")
    assert export_main([empty, "--out", str(tmp_path / "model.safetensors")]) == 2
    assert "holds no finished checkpoint" in capsys.readouterr().err
