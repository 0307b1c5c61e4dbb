"""The distillation objective: alpha = 0 is the gold loss, the KD term is minimised by the
teacher's own logits, T = 1 is cross-entropy against the teacher's probabilities, and the
scaling conventions differ by the powers of T they claim."""
from __future__ import annotations

import pytest
import torch

from engine.errors import ConfigError
from engine.data import Shard
from models.mlp import MLP
from tasks.images.digits_canvas import DigitsOnCanvas
from tasks.common.distillation import SCALINGS, Distillation, distillation_loss


def tiny_task() -> DigitsOnCanvas:
    return DigitsOnCanvas(canvas=10, train_shift=1, max_shift=1, scale_range=(1.0, 1.2))


def mlp(seed: int) -> MLP:
    torch.manual_seed(seed)
    return MLP(input_dim=100, num_classes=10, hidden=(16,))


def test_alpha_zero_is_exactly_the_gold_loss_and_alpha_mixes_linearly():
    task = tiny_task()
    student, teacher = mlp(0), mlp(1)
    batch = next(task.batches("train", Shard(batch_size=16)))
    gold, gold_metrics = task.loss(student, batch)
    total, metrics = Distillation(task=task, teacher=teacher, alpha=0.0).loss(student, batch)
    assert torch.equal(total, gold) and torch.equal(metrics["accuracy"], gold_metrics["accuracy"])
    half, parts = Distillation(task=task, teacher=teacher, alpha=0.5, temperature=2.0).loss(student, batch)
    assert torch.allclose(half, 0.5 * gold + 0.5 * parts["kd_loss"])
    expected_kd = distillation_loss(student(batch["image"])["logits"], teacher(batch["image"])["logits"],
                                    temperature=2.0)
    assert torch.allclose(parts["kd_loss"], expected_kd)


@pytest.mark.parametrize("scaling", sorted(SCALINGS))
@pytest.mark.parametrize("temperature", [1.0, 5.0])
def test_kd_loss_is_minimised_by_the_teachers_own_logits(scaling, temperature):
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(64, 10, generator=generator) * 3
    at_teacher = teacher.clone().requires_grad_(True)
    best = distillation_loss(at_teacher, teacher, temperature=temperature, scaling=scaling)
    best.backward()
    assert at_teacher.grad.abs().max() < 1e-6  # a stationary point ...
    for _ in range(20):  # ... and the minimum: any other logits cost more
        other = teacher + torch.randn(64, 10, generator=generator)
        assert distillation_loss(other, teacher, temperature=temperature, scaling=scaling) > best
    shifted = teacher + torch.randn(64, 1, generator=generator)  # softmax ignores a per-row constant
    assert torch.allclose(distillation_loss(shifted, teacher, temperature=temperature, scaling=scaling), best)


def test_temperature_one_is_cross_entropy_against_the_teacher_probabilities():
    generator = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(8, 5, generator=generator), torch.randn(8, 5, generator=generator)
    expected = torch.nn.functional.cross_entropy(student, torch.softmax(teacher, dim=-1))
    for scaling in SCALINGS:  # T = 1: every convention scales by 1
        assert torch.allclose(distillation_loss(student, teacher, temperature=1.0, scaling=scaling), expected)


def test_scaling_conventions_differ_by_powers_of_the_temperature():
    generator = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(8, 5, generator=generator), torch.randn(8, 5, generator=generator)
    plain = distillation_loss(student, teacher, temperature=4.0, scaling="none")
    assert torch.allclose(distillation_loss(student, teacher, temperature=4.0, scaling="t_squared"), plain * 16)
    assert torch.allclose(distillation_loss(student, teacher, temperature=4.0, scaling="inverse_t_squared"), plain / 16)


@pytest.mark.parametrize("settings", [{"alpha": 1.5}, {"alpha": -0.1}, {"temperature": 0.0},
                                      {"scaling": "hinton"}, {"compare_batches": -1}])
def test_bad_distillation_settings_are_config_errors(settings):
    with pytest.raises(ConfigError):
        Distillation(task=tiny_task(), **settings)


def test_mismatched_teacher_classes_are_a_config_error():
    task = tiny_task()
    wrong = MLP(input_dim=100, num_classes=7, hidden=(16,))
    batch = next(task.batches("train", Shard(batch_size=4)))
    with pytest.raises(ConfigError, match="teacher .MLP. cannot run"):
        Distillation(task=task, teacher=wrong).loss(mlp(0), batch)
    with pytest.raises(ConfigError, match="do not match"):
        distillation_loss(torch.zeros(4, 10), torch.zeros(4, 7))


def test_teacher_dropout_switch_runs_the_teacher_in_training_mode_only_when_asked():
    task = tiny_task()
    torch.manual_seed(0)
    teacher = MLP(input_dim=100, num_classes=10, hidden=(32,), dropout=0.5)
    batch = next(task.batches("train", Shard(batch_size=8)))
    quiet = Distillation(task=task, teacher=teacher, teacher_dropout=False)
    assert torch.equal(quiet.teacher_logits(batch), quiet.teacher_logits(batch))
    noisy = Distillation(task=task, teacher=teacher, teacher_dropout=True)  # Reflect's offline teacher
    assert not torch.equal(noisy.teacher_logits(batch), noisy.teacher_logits(batch))
