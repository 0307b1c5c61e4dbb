"""An exponential moving average of the model's weights, as a callback any run can add:
`train.callbacks = [@EMA()]`. Diffusion models sample far better from averaged weights.

The average lives in a copy of the module; its weights go into every checkpoint (exact resume),
it is evaluated beside the live weights (metrics under `ema/`), and the final average is written
to `<workdir>/ema.safetensors`, which `train.init_from` or any script can load.
"""
from __future__ import annotations

import copy
import os
from typing import Any

import gin
import torch

from engine.callbacks import Callback
from engine.data import frozen
from engine.errors import ConfigError, require_int, require_number

EMA_FILE = "ema.safetensors"


@gin.configurable
class EMA(Callback):
    """After every `update_every` optimizer steps: average <- decay * average + (1 - decay) * weights.

    With `warmup`, the decay is min(decay, (1 + n) / (10 + n)) after n updates, so a short run
    is not dominated by its random initialisation. Until `start_step` the average just copies.
    Floating-point buffers are averaged like parameters; integer buffers are copied.
    """

    name = "ema"

    def __init__(self, *, decay: float = 0.999, warmup: bool = True, start_step: int = 0, update_every: int = 1,
                 evaluate: bool = True, export: bool = True) -> None:
        require_number(decay, "EMA.decay", low=0, below=1)
        require_int(update_every, "EMA.update_every", low=1)
        require_int(start_step, "EMA.start_step", low=0)
        self.decay = float(decay)
        self.warmup = warmup
        self.start_step = start_step
        self.update_every = update_every
        self.evaluate = evaluate
        self.export = export
        self.num_updates = 0
        self.averaged: torch.nn.Module | None = None
        self._restored: dict[str, torch.Tensor] | None = None

    # --- the average ----------------------------------------------------------------------
    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    def on_start(self, trainer: Any) -> None:
        strategy = trainer.strategy
        if strategy.shards_parameters:
            raise ConfigError(f"EMA keeps a whole copy of the weights, which the {strategy.name} strategy shards "
                              f"across ranks (no rank holds them): run EMA under single, ddp, fairscale or "
                              f"DeepSpeed stage 1-2, or remove @EMA() from train.callbacks")
        module = strategy.module
        self.averaged = frozen(copy.deepcopy(module))
        if self._restored is not None:
            self.averaged.load_state_dict(self._restored)
            self._restored = None

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        """Fold `module`'s current weights into the average (one EMA step)."""
        live = module.state_dict()
        averaged = self.averaged.state_dict()
        decay = self.current_decay()
        floats_avg, floats_live = [], []
        for name, value in averaged.items():
            if value.is_floating_point():
                floats_avg.append(value)
                floats_live.append(live[name].detach())
            else:
                value.copy_(live[name])
        if floats_avg:
            torch._foreach_lerp_(floats_avg, floats_live, 1.0 - decay)
        self.num_updates += 1

    @torch.no_grad()
    def on_step_end(self, trainer: Any, step: int) -> None:
        if step % self.update_every:
            return
        if step <= self.start_step:
            self.averaged.load_state_dict(trainer.strategy.module.state_dict())
            return
        self.update(trainer.strategy.module)

    # --- evaluation and export -------------------------------------------------------------
    def on_evaluate(self, trainer: Any, step: int, split: str) -> dict[str, Any]:
        if not self.evaluate or self.averaged is None:
            return {}
        metrics = trainer.task.evaluate(self.averaged, split, trainer.shard)
        return {f"ema/{name}": value for name, value in metrics.items()}

    def on_end(self, trainer: Any) -> None:
        if self.export and self.averaged is not None and trainer.strategy.is_main:
            from safetensors.torch import save_file
            tensors = {k: v.detach().cpu().contiguous().clone() for k, v in self.averaged.state_dict().items()}
            os.makedirs(trainer.workdir, exist_ok=True)
            save_file(tensors, os.path.join(trainer.workdir, EMA_FILE), metadata={"num_updates": str(self.num_updates)})

    # --- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.averaged is None:
            return {}
        weights = {k: v.detach().cpu().clone() for k, v in self.averaged.state_dict().items()}
        return {"num_updates": self.num_updates, "weights": weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.num_updates = int(state["num_updates"])
        if self.averaged is None:
            self._restored = state["weights"]  # applied in on_start, once the copy exists
        else:
            self.averaged.load_state_dict(state["weights"])
