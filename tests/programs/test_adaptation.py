"""The adaptation programs end to end on tiny rotated moons: stages run in order from the
previous weights, results are recorded, finished stages are not trained again, a shared source
model is reused, and configurations that cannot work fail before training."""
from __future__ import annotations

import json
import os

import pytest

from engine.errors import ConfigError
from engine.logging import read_metrics
import programs.adaptation
from tests.helpers import print_config, stop_first_stage, tiny_config, train_in_process

MOONS = ("gin/gift/gift.gin", "gin/gift/moons.gin")
TINY = tiny_config("tiny_gift_moons")


def train_records(workdir):
    return [r for r in read_metrics(workdir) if r["split"] == "train"]


def rounds(workdir):
    with open(os.path.join(workdir, "adaptation.json")) as handle:
        return json.load(handle)


def test_gift_runs_its_rounds_from_the_previous_weights_and_records_accuracy(tmp_path):
    workdir = str(tmp_path / "gift")
    result = train_in_process(workdir, TINY + ["gift.rounds = 3"], files=MOONS)
    recorded = rounds(workdir)
    assert [r["stage"] for r in recorded] == ["source", "round_1", "round_2", "round_3"]
    assert [r["lambda_mean"] for r in recorded] == [None, pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0]
    assert set(recorded[0]["accuracy"]) == {"source", "intermediate_1", "intermediate_2", "target"}
    assert result.target_accuracy == [r["accuracy"]["target"] for r in recorded]
    for stage in ("round_1", "round_2", "round_3"):
        assert train_records(os.path.join(workdir, stage))[-1]["step"] == 15
    # Running the finished program again trains nothing and reports the same numbers.
    before = train_records(os.path.join(workdir, "round_3"))
    again = train_in_process(workdir, TINY + ["gift.rounds = 3"], files=MOONS)
    assert again.target_accuracy == result.target_accuracy
    assert train_records(os.path.join(workdir, "round_3")) == before


def test_gradual_self_training_walks_the_intermediate_domains_then_the_target(tmp_path):
    workdir = str(tmp_path / "gradual")
    train_in_process(workdir, TINY, files=("gin/gift/gradual_self_training.gin", "gin/gift/moons.gin"))
    assert [r["domain"] for r in rounds(workdir)] == ["source", "intermediate_1", "intermediate_2", "target"]


def test_programs_sharing_a_source_workdir_train_the_source_once(tmp_path):
    shared = str(tmp_path / "source")
    bindings = TINY + [f"self_training.source_workdir = '{shared}'", "self_training.rounds = 1",
                       "ALL_ROUNDS_STEPS = 10"]
    files = ("gin/gift/self_training.gin", "gin/gift/moons.gin")
    first = train_in_process(str(tmp_path / "a"), bindings, files=files)
    trained = train_records(shared)
    second = train_in_process(str(tmp_path / "b"), bindings + ["self_training.teacher_from = 'model'"], files=files)
    assert train_records(shared) == trained
    assert not os.path.exists(str(tmp_path / "b" / "source"))
    # The teacher read back from the checkpoint and the one copied in memory are the same model.
    assert first.rounds == second.rounds


@pytest.mark.parametrize("files, bindings, message", [
    (MOONS, ["TRAIN_DOMAIN = 'target'"], "train_domain must be 'source'"),
    (MOONS, ["gift.rounds = 0"], "gift.rounds must be an integer >= 1"),
    (MOONS, ["GiftTask.mix_layers = [0, 5]"], "has 2 stages"),
    (MOONS, ["train.eval_every = 0"], "train.eval_every must be an integer >= 1, got 0"),
    (MOONS, ["gift.teacher_from = 'memory'"], "teacher_from"),
    (("gin/gift/gradual_self_training.gin", "gin/gift/moons.gin"), ["RotatedMoons.intermediate_domains = 0"],
     "needs real intermediate domains"),
])
def test_configurations_that_cannot_work_fail_before_training(tmp_path, files, bindings, message):
    workdir = str(tmp_path / "run")
    with pytest.raises(ConfigError, match=message):
        train_in_process(workdir, TINY + bindings, files=files)
    assert not os.path.exists(os.path.join(workdir, "source", "checkpoints"))


def test_print_config_checks_the_source_and_every_round_without_training(tmp_path):
    code, out = print_config(str(tmp_path / "gift"), TINY + ["gift.rounds = 2"], files=MOONS)
    assert code == 0 and not os.path.exists(tmp_path / "gift")
    assert [line for line in out.splitlines() if line.startswith("# stage ")] == [
        "# stage 'source':", "# stage 'round_1':", "# stage 'round_2':"]
    assert out.count("# parameters: ") == 3 and "gift.rounds = 2" in out


def test_a_source_stage_stopped_by_a_signal_ends_the_program(tmp_path, monkeypatch):
    workdir = str(tmp_path / "gift")
    stop_first_stage(monkeypatch, programs.adaptation)
    result = train_in_process(workdir, TINY + ["gift.rounds = 2"], files=MOONS)
    assert result.rounds == [] and result.final.step == 1 and not result.final.finished
    assert not os.path.exists(os.path.join(workdir, "round_1"))
