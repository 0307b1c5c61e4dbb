"""Self-training on an unlabelled domain: a frozen teacher labels each batch, the least confident
fraction of the batch is dropped, and the student learns the rest (Kumar et al. 2020; GIFT).

The filter works per batch, as in GIFT's code, so it needs no pass over the whole domain and a
resumed run sees exactly the same labels. The domain's own labels never reach the batches.
"""
from __future__ import annotations

import math
from typing import Any

import gin
import torch
import torch.nn.functional as F

from engine.data import Shard, follow, frozen
from engine.errors import require, require_number
from engine.task import Task
from tasks.common.arrays import shuffled_batches
from tasks.common.classification import logits_of
from tasks.adaptation.domain_shift import DomainShiftTask

CONFIDENCES = ("max_prob", "logit_range")


def check_confidence_settings(drop_fraction: float, confidence: str, owner: str) -> None:
    require_number(drop_fraction, f"{owner}.drop_fraction", low=0, below=1)
    require(confidence in CONFIDENCES, f"{owner}.confidence must be one of {CONFIDENCES}, got {confidence!r}")


def confidence_of(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-example confidence: the top softmax probability, or max - min logit (GIFT's code)."""
    logits = logits.float()
    if kind == "max_prob":
        return logits.softmax(-1).amax(-1)
    return logits.amax(-1) - logits.amin(-1)


def keep_confident(confidence: torch.Tensor, drop_fraction: float) -> torch.Tensor:
    """A mask that keeps the ceil((1 - drop_fraction) * n) most confident of n examples.

    Ranking (rather than thresholding at a quantile) keeps exactly that many even when
    confidences tie, so the fraction a user asks for is the fraction trained on.
    """
    n = confidence.shape[0]
    keep = min(n, math.ceil((1 - drop_fraction) * n - 1e-9))
    mask = torch.zeros(n, dtype=torch.bool, device=confidence.device)
    mask[confidence.topk(keep, sorted=False).indices] = True
    return mask


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the examples `mask` keeps (zero, with gradients, if it keeps none)."""
    losses = F.cross_entropy(logits.float(), labels, reduction="none")
    return (losses * mask).sum() / mask.sum().clamp_min(1)


@torch.no_grad()
def teacher_labels(teacher: torch.nn.Module, inputs: torch.Tensor, drop_fraction: float,
                   confidence: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hard labels, keep mask, confidences) the frozen teacher gives a batch. The teacher first
    follows the batch to its device (the engine places only the trained model)."""
    logits = logits_of(follow(teacher, inputs.device)(inputs))
    scores = confidence_of(logits, confidence)
    return logits.argmax(-1), keep_confident(scores, drop_fraction), scores


@gin.configurable
class PseudoLabelTask(Task):
    """Train on `domain`'s unlabelled pool with a frozen teacher's confident hard labels.

    `drop_fraction` of every batch (the least confident under `confidence`) is left out of the
    loss. Evaluation is the domain task's: accuracy on every domain's labelled test set.
    """

    def __init__(self, domains: DomainShiftTask, teacher: torch.nn.Module, *, domain: str,
                 drop_fraction: float = 0.1, confidence: str = "max_prob") -> None:
        check_confidence_settings(drop_fraction, confidence, "PseudoLabelTask")
        self.pool = domains.unlabelled_pool(domain)
        self.domains, self.domain = domains, domain
        self.teacher = frozen(teacher)
        self.drop_fraction, self.confidence = drop_fraction, confidence

    def batches(self, split: str, shard: Shard):
        # The split name keys the shuffling, so each domain gets its own order.
        return shuffled_batches(self.pool, f"{self.domain}/unlabelled", shard)

    def loss(self, model, batch):
        inputs = batch[self.domains.input_key]
        labels, keep, scores = teacher_labels(self.teacher, inputs, self.drop_fraction, self.confidence)
        logits = logits_of(model(inputs))
        loss = masked_cross_entropy(logits, labels, keep)
        agreement = (logits.detach().argmax(-1) == labels).float().mean()
        return loss, {"agreement_with_teacher": agreement, "kept_fraction": keep.float().mean(),
                      "teacher_confidence": scores.mean()}

    def evaluate(self, model, split, shard) -> dict[str, Any]:
        return self.domains.evaluate(model, split, shard)
