"""The text-to-text objective shared by span corruption and the downstream tasks: token-level
cross-entropy of the targets under teacher forcing, plus the model's auxiliary loss.

Token ids: 0 is padding (and the decoder's start token), 1 ends a sequence, words start at 2;
span-corruption sentinels count down from the top of the vocabulary, as in T5.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F

from tasks.common.classification import aux_loss_of, logits_of

PAD_ID = 0
EOS_ID = 1
WORD_OFFSET = 2


def sequence_loss(output: Any, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean cross-entropy over real target tokens (+ aux loss) and token accuracy."""
    logits = logits_of(output).float()
    real = targets != PAD_ID
    ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD_ID)
    correct = ((logits.argmax(-1) == targets) & real).sum() / real.sum().clamp_min(1)
    metrics = {"cross_entropy": ce.detach(), "token_accuracy": correct.detach()}
    loss = ce
    aux = aux_loss_of(output)
    if aux is not None:
        loss = ce + aux
        metrics["aux_loss"] = aux.detach()
    if isinstance(output, Mapping) and "dropped_fraction" in output:
        metrics["dropped_fraction"] = output["dropped_fraction"].detach()
    return loss, metrics
