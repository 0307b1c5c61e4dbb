"""The classification objective shared by classification tasks: cross-entropy plus any
auxiliary loss the model returns (ACT ponder cost, MoE balance loss), and accuracy. Scalar
`diagnostics` the model returns (router entropy, ponder cost) are logged with the metrics.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F


def logits_of(output: Any) -> torch.Tensor:
    return output["logits"] if isinstance(output, Mapping) else output


def aux_loss_of(output: Any) -> torch.Tensor | None:
    return output.get("aux_loss") if isinstance(output, Mapping) else None


def classification_loss(output: Any, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean cross-entropy (+ the model's aux loss) and metrics for one batch."""
    logits = logits_of(output).float()
    ce = F.cross_entropy(logits, labels)
    metrics = {"accuracy": (logits.argmax(-1) == labels).float().mean(), "cross_entropy": ce.detach()}
    aux = aux_loss_of(output)
    loss = ce
    if aux is not None:
        loss = ce + aux
        metrics["aux_loss"] = aux.detach()
    if isinstance(output, Mapping) and "ponder" in output:
        metrics["ponder"] = output["ponder"].detach().float().mean()
    metrics.update(diagnostics_of(output))
    return loss, metrics


def diagnostics_of(output: Any) -> dict[str, torch.Tensor]:
    """The model's scalar diagnostics (output['diagnostics']), detached, for logging."""
    diagnostics = output.get("diagnostics") if isinstance(output, Mapping) else None
    if not isinstance(diagnostics, Mapping):
        return {}
    return {name: value.detach().float() for name, value in diagnostics.items()
            if isinstance(value, torch.Tensor) and value.numel() == 1}
