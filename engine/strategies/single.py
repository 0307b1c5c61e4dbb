"""`single`: one process on the CPU or one GPU; the reference every other strategy must match."""
from __future__ import annotations

import os

import gin
import torch

from engine.errors import require
from engine.strategies.base import STATE_FILE, ReplicatedStrategy, load_file


@gin.configurable
class SingleProcess(ReplicatedStrategy):
    """One process, CPU or one GPU: no wrapping, plain torch checkpoints."""

    name = "single"
    needs_torchrun = False

    def setup(self) -> None:
        super().setup()
        require(self.world_size == 1,
                f"strategy 'single' was launched with {self.world_size} ranks; add a distributed "
                "strategy, e.g. --gin gin/strategy/ddp.gin")

    def prepare(self, module, make_optimizer, make_schedule, settings):
        self.module = module.to(self.device)
        self.optimizer = make_optimizer(self.module)
        self.schedule = make_schedule(self.optimizer)
        self.model = torch.compile(self.module) if settings.compile else self.module
        return self.model


def consolidate(directory: str) -> dict[str, torch.Tensor]:
    """The model of a replicated checkpoint (single, ddp, fairscale)."""
    return load_file(os.path.join(directory, STATE_FILE))["model"]
