"""`fsdp`: PyTorch FSDP2 (`fully_shard`) per block, then the root; DCP checkpoints.

Parameters, gradients and optimizer state are sharded over ranks (DTensors on dim 0).
`reshard_after_forward=True` frees gathered block weights after forward (ZeRO-3-like);
False keeps them until backward (ZeRO-2-like). Checkpoints go through
`torch.distributed.checkpoint` with `get_state_dict` / `set_state_dict`, so they reshard to
any world size on load. torch.distributed's FSDP and DCP modules are imported only when this
strategy is used: they add about a second to every run's start-up otherwise.
"""
from __future__ import annotations

import contextlib
import os
from typing import Sequence

import gin
import torch
from torch import nn

from engine.blocks import find_blocks
from engine.errors import ConfigError
from engine.strategies.base import Strategy, load_file, save_file

DCP_DIR = "dcp"
SCHEDULE_FILE = "schedule.pt"
DTYPES = {None: None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@gin.configurable
class FSDP(Strategy):
    """Fully sharded data parallel (FSDP2)."""

    name = "fsdp"
    shards_parameters = True

    def __init__(self, *, shard_modules: Sequence[str] | None = None, reshard_after_forward: bool = True,
                 param_dtype: str | None = None, reduce_dtype: str | None = None,
                 cpu_offload: bool = False) -> None:
        super().__init__()
        for name, value in (("param_dtype", param_dtype), ("reduce_dtype", reduce_dtype)):
            if value not in DTYPES:
                raise ConfigError(f"FSDP.{name} must be one of {sorted(k for k in DTYPES if k)} or None, got {value!r}")
        self.shard_modules = tuple(shard_modules) if shard_modules is not None else None
        self.reshard_after_forward = reshard_after_forward
        self.param_dtype, self.reduce_dtype, self.cpu_offload = param_dtype, reduce_dtype, cpu_offload
        self.blocks: list[nn.Module] = []

    def prepare(self, module, make_optimizer, make_schedule, settings):
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        module = module.to(self.device)
        self.blocks = find_blocks(module, self.shard_modules)
        if self.shard_modules is not None and not self.blocks:
            raise ConfigError(f"FSDP.shard_modules = {list(self.shard_modules)} matches no module of "
                              f"{type(module).__name__}")
        options = dict(mesh=mesh, offload_policy=CPUOffloadPolicy() if self.cpu_offload else OffloadPolicy(),
                       mp_policy=MixedPrecisionPolicy(param_dtype=DTYPES[self.param_dtype],
                                                      reduce_dtype=DTYPES[self.reduce_dtype]))
        for block in self.blocks:
            fully_shard(block, reshard_after_forward=self.reshard_after_forward, **options)
        fully_shard(module, reshard_after_forward=self.reshard_after_forward, **options)
        self.module = module
        self.optimizer = make_optimizer(module)
        self.schedule = make_schedule(self.optimizer)
        self.model = torch.compile(module) if settings.compile else module
        return self.model

    def accumulating(self, last: bool):
        self.module.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def evaluating(self):
        """Gather every block's weights once (a collective), keep them through every forward and
        direct method call of the evaluation, and shard them again afterwards."""
        from torch.distributed.fsdp import FSDPModule
        units = [m for m in self.module.modules() if isinstance(m, FSDPModule)]
        for unit in units:
            unit.set_reshard_after_forward(False, recurse=False)
            unit.unshard()
        try:
            yield
        finally:
            for unit in units:
                unit.set_reshard_after_forward(self.reshard_after_forward, recurse=False)
                unit.reshard()

    def clip_gradients(self, max_norm):
        norm = super().clip_gradients(max_norm)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm

    def save(self, directory: str, train_state: dict) -> None:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict
        model_state, optimizer_state = get_state_dict(self.module, self.optimizer)
        dcp.save({"model": model_state, "optimizer": optimizer_state},
                 checkpoint_id=os.path.join(directory, DCP_DIR))
        if self.is_main:
            save_file(self.schedule_state_dict(), os.path.join(directory, SCHEDULE_FILE))
        self.save_rank_state(directory, train_state)

    def load(self, directory: str) -> dict:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
        model_state, optimizer_state = get_state_dict(self.module, self.optimizer)
        state = {"model": model_state, "optimizer": optimizer_state}
        dcp.load(state, checkpoint_id=os.path.join(directory, DCP_DIR))
        set_state_dict(self.module, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"])
        self.schedule.load_state_dict(load_file(os.path.join(directory, SCHEDULE_FILE)))
        return self.load_rank_state(directory)


def consolidate(directory: str) -> dict[str, torch.Tensor]:
    """Full model weights from the DCP checkpoint, read in this one process."""
    import tempfile
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "full.pt")
        dcp_to_torch_save(os.path.join(directory, DCP_DIR), path)
        return load_file(path)["model"]
