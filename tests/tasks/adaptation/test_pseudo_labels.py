"""Pseudo-labelling keeps exactly the confident fraction of each batch it promises, and the
student learns the teacher's hard labels on those examples only."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from engine.errors import ConfigError
from engine.data import Shard
from models.mlp import MLP
from tasks.adaptation.domain_shift import RotatedMoons
from tasks.adaptation.pseudo_labels import PseudoLabelTask, confidence_of, keep_confident


@pytest.mark.parametrize("n, drop", [(10, 0.25), (10, 0.0), (10, 0.95), (7, 0.5), (64, 0.1)])
def test_keep_confident_keeps_the_most_confident_ceil_fraction(n, drop):
    torch.manual_seed(n)
    scores = torch.rand(n)
    kept = keep_confident(scores, drop)
    assert int(kept.sum()) == math.ceil((1 - drop) * n)
    if not kept.all():
        assert scores[kept].min() > scores[~kept].max()  # nothing dropped beats anything kept


def test_keep_confident_keeps_the_promised_count_when_confidences_tie():
    assert int(keep_confident(torch.ones(10), 0.3).sum()) == 7


def test_confidences_rank_a_peaked_prediction_above_a_flat_one():
    logits = torch.tensor([[4.0, 0.0, 0.0], [1.0, 0.9, 0.8]])
    for kind in ("max_prob", "logit_range"):
        scores = confidence_of(logits, kind)
        assert scores[0] > scores[1]
    assert torch.allclose(confidence_of(logits, "logit_range"), torch.tensor([4.0, 0.2]))


def test_pseudo_label_loss_is_cross_entropy_on_the_teachers_confident_labels():
    torch.manual_seed(0)
    domains = RotatedMoons(pool_size=64, intermediate_pool_size=8, test_size=8, intermediate_domains=0)
    teacher, student = MLP(input_dim=2, num_classes=2, hidden=(8,)), MLP(input_dim=2, num_classes=2, hidden=(8,))
    task = PseudoLabelTask(domains, teacher, domain="target", drop_fraction=0.25)
    batch = next(task.batches("train", Shard(batch_size=32)))
    loss, metrics = task.loss(student, batch)
    with torch.no_grad():
        teacher_logits = teacher(batch["inputs"])["logits"]
    keep = keep_confident(teacher_logits.softmax(-1).amax(-1), 0.25)
    expected = F.cross_entropy(student(batch["inputs"])["logits"][keep], teacher_logits.argmax(-1)[keep])
    assert torch.allclose(loss, expected)
    assert float(metrics["kept_fraction"]) == 24 / 32
    assert not any(p.requires_grad for p in teacher.parameters())  # the teacher is frozen


@pytest.mark.parametrize("drop, kind", [(1.0, "max_prob"), (-0.1, "max_prob"), (0.1, "entropy")])
def test_bad_filter_settings_are_config_errors(drop, kind):
    domains = RotatedMoons(pool_size=8, intermediate_pool_size=8, test_size=8, intermediate_domains=0)
    with pytest.raises(ConfigError):
        PseudoLabelTask(domains, torch.nn.Identity(), domain="target", drop_fraction=drop, confidence=kind)
