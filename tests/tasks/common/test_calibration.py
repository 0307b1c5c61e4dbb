"""Expected calibration error on hand-computed cases, and through a task's evaluation."""
from __future__ import annotations

import math

import numpy as np
import torch

from engine.metrics import Ratio
from tasks.common.calibration import ece, evaluate_calibration


def logits_with_confidence(confidence: float, predicted: int, classes: int = 2) -> torch.Tensor:
    """Logits whose softmax puts `confidence` on `predicted`, the rest spread evenly."""
    rest = (1 - confidence) / (classes - 1)
    probabilities = torch.full((classes,), rest)
    probabilities[predicted] = confidence
    return probabilities.log()


def test_ece_is_zero_when_confidence_matches_accuracy():
    # 10 predictions at confidence 0.8, 8 of them right.
    logits = torch.stack([logits_with_confidence(0.8, 0)] * 10)
    labels = torch.tensor([0] * 8 + [1] * 2)
    assert abs(ece(logits, labels)) < 1e-6


def test_ece_of_an_overconfident_model_is_the_weighted_gap():
    # Bin (0.9, 1.0]: 4 predictions at 0.95, 2 right -> gap 0.45, share 0.5.
    # Bin (0.6, 0.7]: 4 predictions at 0.65, all right -> gap 0.35, share 0.5.
    logits = torch.stack([logits_with_confidence(0.95, 1)] * 4 + [logits_with_confidence(0.65, 0)] * 4)
    labels = torch.tensor([1, 1, 0, 0, 0, 0, 0, 0])
    assert math.isclose(ece(logits, labels), 0.5 * 0.45 + 0.5 * 0.35, abs_tol=1e-6)
    # With a single bin, the gaps of the two groups cancel partly: |6/8 - 0.8|.
    assert math.isclose(ece(logits, labels, bins=1), abs(6 / 8 - 0.8), abs_tol=1e-6)


def test_calibration_over_batches_equals_calibration_of_all_predictions():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(90, 5, generator=generator) * 3
    labels = torch.randint(0, 5, (90,), generator=generator)
    batches = [{"x": logits[i:i + 32], "label": labels[i:i + 32]} for i in range(0, 90, 32)]
    result = evaluate_calibration(lambda batch: {"logits": batch["x"]}, batches, torch.device("cpu"), bins=7)
    assert isinstance(result["ece"], Ratio) and result["ece"].denominator == 90
    assert np.isclose(result["ece"].value, ece(logits, labels, bins=7))
