"""Optimizers and learning-rate schedules registered for gin.

`train.optimizer` is an optimizer class (e.g. `@AdamW`), called by the engine with parameter
groups; `train.schedule` is a schedule class (e.g. `@WarmupCosine()`) that the engine turns
into a `LambdaLR` for the run's total steps. Schedules are small objects rather than closures
so their state round-trips through checkpoints with `weights_only=True`.
"""
from __future__ import annotations

import abc
import math
from typing import Mapping

import gin
import torch

from engine.errors import ConfigError

for _cls in (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD, torch.optim.Adafactor):
    gin.external_configurable(_cls, module="torch.optim")


@gin.configurable
def param_groups(module: torch.nn.Module, *, weight_decay_on_1d: bool = False,
                 overrides: Mapping[str, Mapping[str, float]] | None = None) -> list[dict]:
    """Split parameters so biases, norms and other 1-d tensors get no weight decay by default.

    `overrides` maps a sub-module name to its own optimizer options, e.g. the classifier head's
    weight decay and learning rate of Zhai et al. (2022) / Abnar et al. (2022):
    `param_groups.overrides = {'head': {'weight_decay': 3.0, 'lr': 1e-3}}`. Its 1-d parameters
    still get no weight decay unless `weight_decay_on_1d`; the default groups stay first.
    """
    overrides = dict(overrides or {})
    for prefix, options in overrides.items():
        bad = sorted(set(options) - OVERRIDABLE)
        if bad or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in options.values()):
            raise ConfigError(f"param_groups.overrides[{prefix!r}] = {dict(options)!r}: options must be "
                              f"numbers for {sorted(OVERRIDABLE)}")
    names = [name for name, _ in module.named_parameters()]
    for prefix in overrides:
        if not any(_under(name, prefix) for name in names):
            raise ConfigError(f"param_groups.overrides names {prefix!r}, which holds no parameters of "
                              f"{type(module).__name__}; its top-level modules are "
                              f"{sorted({n.split('.')[0] for n in names})}")
    groups: dict[tuple[str | None, bool], list] = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        prefix = next((p for p in overrides if _under(name, p)), None)
        groups.setdefault((prefix, param.dim() >= 2 or weight_decay_on_1d), []).append(param)
    out = []
    for (prefix, decays), params in sorted(groups.items(), key=lambda item: (item[0][0] is not None, not item[0][1])):
        group = {"params": params, **(overrides[prefix] if prefix is not None else {})}
        if not decays:
            group["weight_decay"] = 0.0
        out.append(group)
    return out


#: Optimizer options a parameter group may set for itself through `param_groups.overrides`.
OVERRIDABLE = frozenset({"lr", "weight_decay"})


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


class _Schedule(abc.ABC):
    """A multiplier of the base learning rate as a function of the step (0-based): a linear
    warmup over `warmup_steps` to the peak (1), then the subclass's `decay`.

    Every schedule warms up the same way, so a subclass says only how it decays. Its fields are
    plain numbers: `LambdaLR` saves them in the scheduler state, so a resumed run continues the
    same curve.
    """

    def __init__(self, *, warmup_steps: int = 0) -> None:
        self.warmup_steps = int(warmup_steps)
        self.total_steps = 1

    def for_steps(self, total_steps: int) -> "_Schedule":
        self.total_steps = max(int(total_steps), 1)
        return self

    def warmup(self, step: int) -> float:
        return min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0

    def progress(self, step: int) -> float:
        """How far into the decay `step` is: 0 at the end of warmup, 1 at the last step and after."""
        span = max(self.total_steps - self.warmup_steps, 1)
        return min((step - self.warmup_steps) / span, 1.0)

    def __call__(self, step: int) -> float:
        """The multiplier at `step`."""
        return self.warmup(step) if step < self.warmup_steps else self.decay(step)

    @abc.abstractmethod
    def decay(self, step: int) -> float:
        """The multiplier at `step` once warmup is over (`step >= warmup_steps`)."""


@gin.configurable
class Constant(_Schedule):
    """Constant learning rate after an optional linear warmup."""

    def decay(self, step: int) -> float:
        return 1.0


@gin.configurable
class WarmupCosine(_Schedule):
    """Linear warmup, then cosine decay to `final_ratio` of the peak at the last step."""

    def __init__(self, *, warmup_steps: int = 0, final_ratio: float = 0.0) -> None:
        super().__init__(warmup_steps=warmup_steps)
        self.final_ratio = float(final_ratio)

    def decay(self, step: int) -> float:
        return self.final_ratio + (1 - self.final_ratio) * 0.5 * (1 + math.cos(math.pi * self.progress(step)))


@gin.configurable
class WarmupLinear(_Schedule):
    """Linear warmup, then linear decay to `final_ratio` of the peak at the last step."""

    def __init__(self, *, warmup_steps: int = 0, final_ratio: float = 0.0) -> None:
        super().__init__(warmup_steps=warmup_steps)
        self.final_ratio = float(final_ratio)

    def decay(self, step: int) -> float:
        return 1 - (1 - self.final_ratio) * self.progress(step)


@gin.configurable
class WarmupRsqrt(_Schedule):
    """Linear warmup, then inverse square-root decay (T5 style), peak 1 at the end of warmup."""

    def decay(self, step: int) -> float:
        return math.sqrt(max(self.warmup_steps, 1) / (step + 1))


def make_schedule(schedule: _Schedule, optimizer: torch.optim.Optimizer,
                  total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.for_steps(total_steps))
