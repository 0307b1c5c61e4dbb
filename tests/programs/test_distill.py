"""The `distill` program end to end at tiny sizes: it trains a teacher, reloads it, distils it
into a student of another family without changing it, loads teachers from exports, and with
alpha = 0 trains the student exactly as plain training does."""
from __future__ import annotations

import os

import gin
import pytest
import torch
from safetensors.torch import save_file

from engine import config, program
from engine.errors import ConfigError
from engine.logging import read_metrics
from engine.data import Shard
from models.cnn import SmallCNN
from models.mlp import MLP
from tasks.images.digits_canvas import DigitsOnCanvas
from programs.distill import load_teacher
from tasks.common.distillation import Distillation
import programs.distill
from tests.helpers import REPO, losses, stop_first_stage, tiny_config, train_in_process

TINY_DIGITS = tiny_config("tiny_kd_digits")
TINY_AGREEMENT = tiny_config("tiny_kd_agreement")


def first_and_last(workdir: str, name: str) -> tuple[float, float]:
    values = [r[name] for r in read_metrics(workdir) if r["split"] == "train" and name in r]
    return values[0], values[-1]


def test_distill_trains_a_cnn_teacher_then_an_mlp_student_that_moves_towards_it(tmp_path):
    workdir = str(tmp_path / "run")
    result = train_in_process(workdir, TINY_DIGITS + ["train.steps = 40", "train.eval_every = 40",
                                                      "Distillation.compare_batches = 2"],
                              files=("gin/kd/kd_mlp_from_cnn.gin",))
    assert result.workdir == os.path.join(workdir, "student") and result.step == 40
    first, last = first_and_last(result.workdir, "kd_loss")
    assert last < first
    final = result.metrics["translated"]
    assert {"accuracy", "ece", "teacher_agreement", "cka/pre_logits", "cka/student_1_teacher_1"} <= set(final)
    # The teacher the student saw is the one the teacher stage trained: reloaded from its run
    # folder, it scores what the teacher stage logged.
    task = DigitsOnCanvas(canvas=10, train_shift=1, max_shift=1, scale_range=(1.0, 1.2))
    teacher = load_teacher(lambda: SmallCNN(channels=1, num_classes=10, widths=(8,)), os.path.join(workdir, "teacher"))
    logged = [r for r in read_metrics(os.path.join(workdir, "teacher")) if r["split"] == "translated"][-1]
    with torch.no_grad():
        assert task.evaluate(teacher.eval(), "translated", Shard(batch_size=32))["accuracy"].value == logged["accuracy"]


def test_the_frozen_teacher_does_not_change_while_the_student_learns_from_it(tmp_path):
    task = DigitsOnCanvas(canvas=10, train_shift=1, max_shift=1, scale_range=(1.0, 1.2))
    torch.manual_seed(5)
    teacher = MLP(input_dim=100, num_classes=10, hidden=(24,))
    with torch.no_grad():  # confident predictions, so there is something to learn
        teacher.head.weight.mul_(30.0)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    objective = Distillation(task=task, teacher=teacher, alpha=1.0, temperature=1.0, compare_batches=0)
    config.parse([os.path.join(REPO, "gin", "kd", "kd_mlp.gin")], TINY_DIGITS + ["train.steps = 30"])
    with gin.unlock_config():
        gin.bind_parameter("train.task", objective)
    result = program.main(str(tmp_path / "run"))
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters())
    first, last = first_and_last(result.workdir, "kd_loss")
    assert last < 0.8 * first
    first, last = first_and_last(result.workdir, "teacher_agreement")
    assert last > first + 0.3


def test_alpha_zero_student_from_an_exported_teacher_matches_plain_training_exactly(tmp_path):
    torch.manual_seed(0)
    teacher = SmallCNN(channels=1, num_classes=10, widths=(8,))
    export = str(tmp_path / "teacher.safetensors")
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, export)
    steps = ["train.steps = 15", "train.eval_every = 0"]
    train_in_process(str(tmp_path / "plain"), TINY_DIGITS + steps, files=("gin/kd/kd_mlp.gin",))
    result = train_in_process(str(tmp_path / "kd"), TINY_DIGITS + steps + [
        "Distillation.alpha = 0.0", f"distill.teacher_weights = '{export}'"], files=("gin/kd/kd_mlp_from_cnn.gin",))
    assert not os.path.exists(str(tmp_path / "kd" / "teacher"))  # loaded, not trained
    assert losses(result.workdir) == losses(str(tmp_path / "plain"))


def test_lstm_teacher_distils_into_a_transformer_on_agreement(tmp_path):
    result = train_in_process(str(tmp_path / "run"), TINY_AGREEMENT + [
        "train.steps = 25", "train.eval_every = 25", "Distillation.compare_batches = 1"],
        files=("gin/kd/kd_transformer_from_lstm.gin",))
    first, last = first_and_last(result.workdir, "kd_loss")
    assert last < first
    final = result.metrics["eval"]
    assert {"accuracy/attractors_2", "ece", "teacher_agreement", "cka/student_1_teacher_1"} <= set(final)


def test_bad_distillation_settings_fail_before_the_teacher_trains(tmp_path):
    workdir = str(tmp_path / "run")
    with pytest.raises(ConfigError, match="alpha"):
        train_in_process(workdir, TINY_DIGITS + ["train.steps = 5", "Distillation.alpha = 2.0"],
                         files=("gin/kd/kd_mlp_from_cnn.gin",))
    assert not os.path.exists(os.path.join(workdir, "teacher"))
    with pytest.raises(ConfigError, match="no such file"):
        train_in_process(workdir, TINY_DIGITS + ["train.steps = 5", "distill.teacher_weights = 'missing.safetensors'"],
                         files=("gin/kd/kd_mlp_from_cnn.gin",))
    with pytest.raises(ConfigError, match="teacher_seed_offset"):
        train_in_process(workdir, TINY_DIGITS + ["train.steps = 5", "distill.teacher_seed_offset = -1"],
                         files=("gin/kd/kd_mlp_from_mlp.gin",))
    assert not os.path.exists(os.path.join(workdir, "teacher"))


def test_the_teacher_trains_from_the_next_seed_of_every_seed(tmp_path):
    """kd_mlp_from_mlp.gin's teacher_seed_offset: at seed 3 the teacher stage is exactly the MLP
    trained alone from seed 4, so a same-family student never starts at its teacher's weights."""
    short = TINY_DIGITS + ["train.steps = 6", "train.eval_every = 6", "Distillation.compare_batches = 0"]
    distilled = str(tmp_path / "distilled")
    train_in_process(distilled, short + ["train.seed = 3"], files=("gin/kd/kd_mlp_from_mlp.gin",))
    alone = {seed: train_in_process(str(tmp_path / f"alone{seed}"), short + [f"train.seed = {seed}"],
                                    files=("gin/kd/kd_mlp.gin",)).metrics["translated"] for seed in (3, 4)}
    teacher = [r for r in read_metrics(os.path.join(distilled, "teacher")) if r["split"] == "translated"][-1]
    assert teacher["loss"] == alone[4]["loss"] != alone[3]["loss"]


@pytest.mark.parametrize("wrong", [MLP(input_dim=100, num_classes=10, hidden=(32,)),   # another family
                                   SmallCNN(channels=1, num_classes=10, widths=(32,))])  # other shapes
def test_teacher_weights_of_the_wrong_model_are_a_config_error(tmp_path, wrong):
    export = str(tmp_path / "wrong.safetensors")
    save_file(wrong.state_dict(), export)
    with pytest.raises(ConfigError, match="do not fit distill.teacher"):
        train_in_process(str(tmp_path / "run"), TINY_DIGITS + ["train.steps = 5", f"distill.teacher_weights = '{export}'"],
                         files=("gin/kd/kd_mlp_from_cnn.gin",))


def test_print_config_describes_both_stages_without_training(tmp_path, capsys):
    from launch.run import main as run_main
    args = ["--gin", os.path.join(REPO, "gin/kd/kd_mlp_from_cnn.gin"), "--print-config", "--workdir", str(tmp_path / "run")]
    assert run_main(args + [a for b in TINY_DIGITS for a in ("--bind", b)]) == 0
    out = capsys.readouterr().out
    teacher, student = out.split("# stage 'teacher':")[1].split("# stage 'student':")
    assert "# parameters: " in teacher and "# parameters: " in student
    assert not os.path.exists(str(tmp_path / "run"))


def test_a_teacher_stopped_by_a_signal_ends_the_program_before_the_student(tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    stop_first_stage(monkeypatch, programs.distill)
    result = train_in_process(workdir, TINY_DIGITS + ["train.steps = 5"], files=("gin/kd/kd_mlp_from_cnn.gin",))
    assert result.workdir == os.path.join(workdir, "teacher") and result.step == 1 and not result.finished
    assert not os.path.exists(os.path.join(workdir, "student"))
