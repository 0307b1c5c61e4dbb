"""`fairscale`: optimizer-state sharding (`OSS`, ZeRO-1-like) with `ShardedDataParallel`,
which reduces each gradient only to the rank that owns its optimizer shard.

fairscale's last release is 0.4.13 (2022); it still works with torch 2.13 on CPU/gloo. Its
native successors are `ZeroRedundancyOptimizer` and FSDP2 (gin/strategy/fsdp.gin).
Checkpoints use the replicated format: the optimizer state is consolidated on rank 0 first.
"""
from __future__ import annotations

import contextlib
import inspect

import gin
import torch

from engine.strategies.base import ReplicatedStrategy
from engine.strategies.single import consolidate  # noqa: F401  (same checkpoint format)


@gin.configurable
class Fairscale(ReplicatedStrategy):
    """fairscale OSS + ShardedDataParallel."""

    name = "fairscale"

    def __init__(self, *, broadcast_buffers: bool = True, reduce_buffer_size: int = 0) -> None:
        super().__init__()
        self.broadcast_buffers = broadcast_buffers
        self.reduce_buffer_size = reduce_buffer_size
        self.sdp = None

    def prepare(self, module, make_optimizer, make_schedule, settings):
        from fairscale.nn.data_parallel import ShardedDataParallel
        from fairscale.optim.oss import OSS
        self.module = module.to(self.device)
        template = make_optimizer(self.module)  # the configured optimizer: its class, groups, defaults
        accepted = inspect.signature(type(template).__init__).parameters
        defaults = {k: v for k, v in template.defaults.items() if k in accepted}
        groups = [{k: v for k, v in group.items() if k == "params" or group[k] != template.defaults.get(k)}
                  for group in template.param_groups]
        self.optimizer = OSS(groups, optim=type(template), **defaults)
        del template
        self.sdp = ShardedDataParallel(self.module, self.optimizer, broadcast_buffers=self.broadcast_buffers,
                                       reduce_buffer_size=self.reduce_buffer_size)
        self.schedule = make_schedule(self.optimizer)
        self.model = torch.compile(self.sdp) if settings.compile else self.sdp
        return self.model

    def accumulating(self, last: bool):
        return contextlib.nullcontext() if last else self.sdp.no_sync()

    def clip_gradients(self, max_norm):
        # OSS computes the norm over every rank's shard (each rank holds its own reduced grads).
        return self.optimizer.clip_grad_norm(max_norm if max_norm is not None else float("inf"))

    def local_state_bytes(self) -> dict[str, int]:
        report = super().local_state_bytes()
        state = self.optimizer.optim.state  # this rank's partition only
        report["optimizer"] = int(sum(v.numel() * v.element_size() for s in state.values()
                                      for v in s.values() if isinstance(v, torch.Tensor)))
        return report

    def full_optimizer_state(self) -> dict | None:
        self.optimizer.consolidate_state_dict(recipient_rank=0)  # collective
        return self.optimizer.state_dict() if self.is_main else None
