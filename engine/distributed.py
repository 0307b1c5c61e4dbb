"""Process-group setup from the torchrun environment, rank helpers and seeding.

CUDA + NCCL where a GPU is present, CPU + gloo otherwise. A plain `python launch/run.py`
(no torchrun variables) is a world of one and starts no process group.
"""
from __future__ import annotations

import os
import random
import shlex
import sys
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from engine.errors import ConfigError


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def env_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


DEVICE_ENV = "GINTRAIN_DEVICE"


def default_device() -> torch.device:
    """This rank's device: the GPU of its local rank where CUDA is present, else the CPU.

    $GINTRAIN_DEVICE=cpu keeps a run on the CPU (and gloo) on a GPU machine. A process that sees
    exactly one GPU through CUDA_VISIBLE_DEVICES (a scheduler's GPU per task) uses it whatever its
    local rank. Otherwise a local rank without a GPU of its own is an error, not a silent share:
    NCCL cannot put two ranks of one job on the same GPU.
    """
    choice = os.environ.get(DEVICE_ENV, "").strip().lower()
    if choice not in ("", "cpu", "cuda"):
        raise ConfigError(f"${DEVICE_ENV} must be 'cpu' or 'cuda', got {choice!r}")
    if choice == "cpu" or not torch.cuda.is_available():
        if choice == "cuda":
            raise ConfigError(f"${DEVICE_ENV}=cuda but torch sees no CUDA device")
        return torch.device("cpu")
    local_rank, gpus = env_local_rank(), torch.cuda.device_count()
    if local_rank < gpus:
        return torch.device("cuda", local_rank)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if gpus == 1 and visible and "," not in visible:
        return torch.device("cuda", 0)
    raise ConfigError(f"local rank {local_rank} has no GPU of its own: this node has {gpus} and NCCL needs one "
                      f"per rank. Use --nproc-per-node {gpus}, or run on the CPU with {DEVICE_ENV}=cpu")


def torchrun_command(nproc: int = 2) -> str:
    """This process's own command line, as the torchrun command that would run it on `nproc` ranks."""
    args = " ".join(shlex.quote(a) for a in sys.argv)
    return f"torchrun --nproc-per-node {nproc} {args}"


def init_process_group(timeout_s: float = 600.0) -> None:
    """Start the default process group from torchrun's environment, once."""
    if dist.is_initialized() or "RANK" not in os.environ:
        return
    device = default_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    timeout = timedelta(seconds=timeout_s)
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        # torchrun's agent keeps one store across restarts (torch 2.13): without a per-attempt
        # prefix, restarted gloo ranks read the dead ranks' addresses and cannot connect.
        store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), env_world_size(),
                              is_master=False, timeout=timeout)
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(backend=backend, timeout=timeout, rank=env_rank(), world_size=env_world_size(),
                                store=dist.PrefixStore(f"/gintrain/attempt_{attempt}", store))
    else:
        dist.init_process_group(backend=backend, timeout=timeout)


def shutdown(finished: bool = False) -> None:
    """Destroy the process group, if one was started. After a normal finish the ranks first meet
    at a barrier, so that none tears down gloo/NCCL while another still talks to it. (The rare
    'terminate called without an active exception' abort of a finished rank happened later, in
    interpreter finalization; launch/run.py's exit_rank skips that phase.)"""
    if dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is true on any rank."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=default_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def all_gather_values(values: list[float]) -> list[list[float]]:
    """Every rank's `values` (same length on all ranks), in rank order."""
    tensor = torch.tensor(values, dtype=torch.float64, device=default_device())
    if not dist.is_initialized():
        return [tensor.tolist()]
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor)
    return [t.tolist() for t in gathered]


def broadcast_object(value: Any) -> Any:
    """Rank 0's `value` on every rank (a picklable object: a path, a message, None)."""
    if not dist.is_initialized():
        return value
    box = [value if rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value: Any) -> list[Any]:
    """Every rank's `value` (picklable), in rank order, on every rank."""
    if not dist.is_initialized():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """This process's RNG states, as values `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state((numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
