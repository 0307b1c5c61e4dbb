"""Expected calibration error (ECE).

ECE = sum over equal-width confidence bins of |accuracy - confidence| weighted by the bin's
share of the examples (Guo et al. 2017), i.e. sum_b |correct_b - confidence_sum_b| / n.
Evaluation reports it as a Ratio of that numerator over the example count: exact on one rank;
under several ranks it is the count-weighted mean of the per-rank ECEs, never below the pooled
value (each rank's gaps are taken before summing). Per-bin parts would be exact but would flood
every log line with 3 x bins numbers.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

from engine.data import to_device
from engine.errors import require_int
from engine.metrics import Ratio
from tasks.common.classification import logits_of


def bin_counts(logits: torch.Tensor, labels: torch.Tensor, bins: int) -> dict[str, np.ndarray]:
    """Per confidence bin: examples, correct predictions and the sum of top-class probabilities."""
    probabilities = torch.softmax(logits.detach().float(), dim=-1)
    confidence, predicted = probabilities.max(dim=-1)
    # Bin b holds confidences in (b/bins, (b+1)/bins]; a softmax confidence is never 0.
    index = (torch.ceil(confidence * bins).long() - 1).clamp(0, bins - 1).cpu()
    values = {"count": torch.ones_like(confidence), "correct": (predicted == labels).float(),
              "confidence": confidence}
    return {name: torch.zeros(bins, dtype=torch.float64).index_add_(0, index, value.double().cpu()).numpy()
            for name, value in values.items()}


def ece_of_counts(counts: Mapping[str, np.ndarray]) -> Ratio:
    return Ratio(float(np.abs(counts["correct"] - counts["confidence"]).sum()), float(counts["count"].sum()))


def ece(logits: torch.Tensor, labels: torch.Tensor, bins: int = 10) -> float:
    """ECE of one set of predictions."""
    return ece_of_counts(bin_counts(logits, labels, bins)).value


def evaluate_calibration(forward: Callable[[Mapping[str, Any]], Any], batches: Iterable[Mapping[str, Any]],
                         device: torch.device, *, bins: int = 10, label_key: str = "label") -> dict[str, Ratio]:
    """{'ece': Ratio} of `forward`'s predictions over all of `batches`."""
    require_int(bins, "calibration_bins", low=1)
    totals = {name: np.zeros(bins) for name in ("count", "correct", "confidence")}
    for batch in batches:
        if len(batch[label_key]) == 0:
            continue
        batch = to_device(batch, device)
        for name, value in bin_counts(logits_of(forward(batch)), batch[label_key], bins).items():
            totals[name] += value
    return {"ece": ece_of_counts(totals)}
