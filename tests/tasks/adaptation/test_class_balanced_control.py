"""The class-balanced self-training control (gin/gift/class_balanced_self_training.gin): GIFT's
class-matched pairing with nothing interpolated. Every round's lambda is exactly 1 at the input,
so a step is cross-entropy of the student on target inputs, each chosen to match a source
example's class among the confident targets and labelled with that class; checked against a
loop written from that description."""
from __future__ import annotations

import math

import gin
import torch
import torch.nn.functional as F

from engine import config
from engine.data import Shard
from tasks.adaptation.gift import GiftTask

FILES = ["gin/gift/class_balanced_self_training.gin", "gin/gift/moons.gin"]
TINY = ["RotatedMoons.pool_size = 64", "RotatedMoons.intermediate_pool_size = 8", "RotatedMoons.test_size = 8",
        "MLP.hidden = (16, 16)", "train.batch_size = 32"]


def control_task(teacher: torch.nn.Module, k: int, rounds: int) -> GiftTask:
    """Round k's task exactly as the gift program builds it under the control's gin files."""
    with gin.config_scope(f"round_{k + 1}"):
        return GiftTask(config.built("gift.domains"), teacher, round_index=k, rounds=rounds)


def test_the_control_pairs_by_class_and_learns_target_inputs_uninterpolated():
    from launch.experiment import gin_path
    config.parse([gin_path(f) for f in FILES], TINY)
    rounds = gin.query_parameter("gift.rounds")
    torch.manual_seed(0)
    teacher, student = config.built("train.model"), config.built("train.model")
    for k in range(rounds):
        task = control_task(teacher, k, rounds)
        assert task.lambda_mean == 1.0 and task.mix_layers == (0,) and task.mixed_labels == "pair"
    task = control_task(teacher, 2, rounds)
    batch = next(task.batches("train", Shard(batch_size=32, seed=3)))
    assert (batch["lambda"] == 1.0).all() and batch["mix_layer"] == 0
    loss, metrics = task.loss(student, batch)

    # By hand: the teacher's labels of the target batch, the confident ceil(0.9 n) of them, and for
    # source example i the floor(u_i * m)-th (in batch order) of the m confident targets of its class.
    source, labels, target = batch["inputs"], batch["label"], batch["target_inputs"]
    with torch.no_grad():
        probabilities = teacher(target)["logits"].softmax(-1)
    confidence, teacher_label = probabilities.max(-1)
    keep = set(confidence.argsort(descending=True)[:math.ceil(0.9 * len(target))].tolist())
    inputs, classes = [], []
    for i in range(len(source)):
        candidates = [j for j in range(len(target)) if j in keep and teacher_label[j] == labels[i]]
        if candidates:
            chosen = candidates[min(int(batch["pair_uniform"][i] * len(candidates)), len(candidates) - 1)]
            inputs.append(target[chosen])
            classes.append(int(labels[i]))
    expected = F.cross_entropy(student(torch.stack(inputs))["logits"], torch.tensor(classes))
    assert len(inputs) > 0.8 * len(source)
    assert torch.allclose(loss, expected, atol=1e-6)
    assert metrics["paired_fraction"] == len(inputs) / len(source)
