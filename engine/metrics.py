"""Metric values that need more than a mean to combine across ranks.

A task's `evaluate` returns `Ratio(numerator, denominator)` for quantities such as accuracy on
the examples of one complexity level, where ranks hold different counts: the engine sums both
parts over ranks before dividing, so the result is exact for any world size.
"""
from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class Ratio:
    numerator: float
    denominator: float

    @property
    def value(self) -> float:
        return float(self.numerator) / float(self.denominator) if float(self.denominator) else float("nan")

    def __add__(self, other: "Ratio") -> "Ratio":
        return Ratio(self.numerator + other.numerator, self.denominator + other.denominator)


def ratio(correct: torch.Tensor, count: torch.Tensor | int) -> Ratio:
    return Ratio(float(correct), float(count))
