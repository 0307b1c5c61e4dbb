"""`ddp`: DistributedDataParallel; every rank holds the whole model and optimizer.

Gradient accumulation runs the non-final micro-batches under `no_sync()`, so gradients are
all-reduced once per optimizer step, not once per micro-batch.
"""
from __future__ import annotations

import contextlib

import gin
import torch
from torch.nn.parallel import DistributedDataParallel

from engine.strategies.base import ReplicatedStrategy
from engine.strategies.single import consolidate  # noqa: F401  (same checkpoint format)


@gin.configurable
class DDP(ReplicatedStrategy):
    """Data parallel with replicated parameters and optimizer state."""

    name = "ddp"

    def __init__(self, *, find_unused_parameters: bool = False, bucket_cap_mb: float = 25.0,
                 static_graph: bool = False) -> None:
        super().__init__()
        self.find_unused_parameters = find_unused_parameters
        self.bucket_cap_mb = bucket_cap_mb
        self.static_graph = static_graph
        self.ddp: DistributedDataParallel | None = None

    def prepare(self, module, make_optimizer, make_schedule, settings):
        self.module = module.to(self.device)
        self.ddp = DistributedDataParallel(
            self.module, device_ids=[self.device] if self.device.type == "cuda" else None,
            find_unused_parameters=self.find_unused_parameters, bucket_cap_mb=self.bucket_cap_mb,
            static_graph=self.static_graph, gradient_as_bucket_view=True)
        self.optimizer = make_optimizer(self.module)
        self.schedule = make_schedule(self.optimizer)
        self.model = torch.compile(self.ddp) if settings.compile else self.ddp
        return self.model

    def accumulating(self, last: bool):
        return contextlib.nullcontext() if last else self.ddp.no_sync()
