"""Optimizers and learning-rate schedules registered for gin.

`train.optimizer` is an optimizer class (e.g. `@AdamW`), called by the engine with parameter
groups; `train.schedule` is a schedule class (e.g. `@WarmupCosine()`) that the engine turns
into a `LambdaLR` for the run's total steps. Schedules are small objects rather than closures
so their state round-trips through checkpoints with `weights_only=True`.
"""
from __future__ import annotations

import math

import gin
import torch

for _cls in (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD, torch.optim.Adafactor):
    gin.external_configurable(_cls, module="torch.optim")


@gin.configurable
def param_groups(module: torch.nn.Module, *, weight_decay_on_1d: bool = False) -> list[dict]:
    """Split parameters so biases, norms and other 1-d tensors get no weight decay by default."""
    decay, no_decay = [], []
    for param in module.parameters():
        if not param.requires_grad:
            continue
        (decay if param.dim() >= 2 or weight_decay_on_1d else no_decay).append(param)
    groups = [{"params": decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


class _Schedule:
    """A multiplier of the base learning rate as a function of the step (0-based)."""

    def __init__(self, *, warmup_steps: int = 0) -> None:
        self.warmup_steps = int(warmup_steps)
        self.total_steps = 1

    def for_steps(self, total_steps: int) -> "_Schedule":
        self.total_steps = max(int(total_steps), 1)
        return self

    def warmup(self, step: int) -> float:
        return min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0

    def __call__(self, step: int) -> float:  # pragma: no cover - overridden
        raise NotImplementedError


@gin.configurable
class Constant(_Schedule):
    """Constant learning rate after an optional linear warmup."""

    def __call__(self, step: int) -> float:
        return self.warmup(step)


@gin.configurable
class WarmupCosine(_Schedule):
    """Linear warmup, then cosine decay to `final_ratio` of the peak at the last step."""

    def __init__(self, *, warmup_steps: int = 0, final_ratio: float = 0.0) -> None:
        super().__init__(warmup_steps=warmup_steps)
        self.final_ratio = float(final_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup(step)
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.final_ratio + (1 - self.final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@gin.configurable
class WarmupLinear(_Schedule):
    """Linear warmup, then linear decay to `final_ratio` of the peak at the last step."""

    def __init__(self, *, warmup_steps: int = 0, final_ratio: float = 0.0) -> None:
        super().__init__(warmup_steps=warmup_steps)
        self.final_ratio = float(final_ratio)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup(step)
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return 1 - (1 - self.final_ratio) * progress


@gin.configurable
class WarmupRsqrt(_Schedule):
    """Linear warmup, then inverse square-root decay (T5 style), peak 1 at the end of warmup."""

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup(step)
        return math.sqrt(max(self.warmup_steps, 1) / (step + 1))


def make_schedule(schedule: _Schedule, optimizer: torch.optim.Optimizer,
                  total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.for_steps(total_steps))
