"""A stand-in for a model inside a task's `loss` that keeps each call's inputs and output.

Wrappers that need more than a task's loss (a distillation objective needs the logits, a
representation probe needs the model's inputs) reuse the wrapped task's own objective through
it, so they work for any task without knowing its batch layout.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from engine.errors import ConfigError


@dataclasses.dataclass
class Call:
    args: tuple
    kwargs: dict
    output: Any


class CallRecorder:
    """Calls `model` like the model itself would be called and records every call."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.calls: list[Call] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        output = self.model(*args, **kwargs)
        self.calls.append(Call(args, kwargs, output))
        return output

    def __getattr__(self, name: str) -> Any:
        # Tasks may ask the model for its parameters (its device) or a config attribute.
        return getattr(self.model, name)

    def only_call(self, who: str) -> Call:
        """The single call a task's loss made; wrappers need exactly one forward per batch."""
        if len(self.calls) != 1:
            raise ConfigError(f"{who} needs a task whose loss calls the model exactly once per batch; "
                              f"this one called it {len(self.calls)} times")
        return self.calls[0]
