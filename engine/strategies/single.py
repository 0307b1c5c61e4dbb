"""`single`: one process on the CPU or one GPU; the reference every other strategy must match."""
from __future__ import annotations

import os

import gin
import torch

from engine.errors import require
from engine.strategies.base import Strategy, load_file

STATE_FILE = "state.pt"


@gin.configurable
class SingleProcess(Strategy):
    """One process, CPU or one GPU: no wrapping, plain torch checkpoints."""

    name = "single"

    def setup(self) -> None:
        super().setup()
        require(self.world_size == 1,
                f"strategy 'single' was launched with {self.world_size} ranks; add a distributed "
                "strategy, e.g. --gin gin/strategy/ddp.gin")

    def prepare(self, module, make_optimizer, make_schedule, *, compile=False):
        self.module = module.to(self.device)
        self.optimizer = make_optimizer(self.module)
        self.schedule = make_schedule(self.optimizer)
        self.model = torch.compile(self.module) if compile else self.module
        return self.model

    def save(self, directory: str, train_state: dict) -> None:
        torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "schedule": self.schedule_state_dict(), "train_state": train_state},
                   os.path.join(directory, STATE_FILE))

    def load(self, directory: str) -> dict:
        state = load_file(os.path.join(directory, STATE_FILE))
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        return state["train_state"]


def consolidate(directory: str) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(directory, STATE_FILE))["model"]
