"""Callbacks: small additions to any run (EMA of weights, periodic probes) without touching the loop.

A callback's `state_dict` is saved in each checkpoint and restored on resume, so it resumes
as exactly as the rest of the run.
"""
from __future__ import annotations

from typing import Any


class Callback:
    """Hooks the trainer calls; override the ones you need."""

    #: Checkpoint key; must be unique among a run's callbacks.
    name = "callback"

    def on_start(self, trainer: Any) -> None:
        """After model, optimizer and (on resume) state are ready, before the first step."""

    def on_step_end(self, trainer: Any, step: int) -> None:
        """After the optimizer step of `step`."""

    def on_evaluate(self, trainer: Any, step: int, split: str) -> dict[str, Any]:
        """Extra metrics for `split` at `step` (reduced and logged with the task's)."""
        return {}

    def on_end(self, trainer: Any) -> None:
        """After the last step."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
