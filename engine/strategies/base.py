"""The strategy interface: everything about one distributed engine, nothing about tasks.

The loop calls, per optimizer step: `accumulating(last)` around each micro-batch's forward
and `backward(loss)`, then `clip_gradients`, then `optimizer_step` (or `skip_step`).
Checkpoints go through `save` / `load`; `consolidate(dir)` (a module-level function in each
strategy file) rebuilds the full model state dict from a checkpoint in one process.
"""
from __future__ import annotations

import abc
import contextlib
import math
import os
import re
import warnings
from typing import Any, Callable, Iterable, Mapping

import torch
import torch.distributed as dist

from engine import distributed, memory
from engine.errors import ConfigError, RefusedFile
from engine.metrics import Ratio

MakeOptimizer = Callable[[torch.nn.Module], torch.optim.Optimizer]
MakeSchedule = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
STATE_FILE = "state.pt"
RANK_STATE_FILE = "train_state_rank{rank}.pt"


class Strategy(abc.ABC):
    """Sets up processes, wraps the model and optimizer, and owns checkpoint I/O."""

    name = "base"
    #: True where the strategy can drop a step with non-finite gradients (NaN guard `skip`).
    can_skip_steps = True
    #: True where no rank holds whole parameters outside forward (FSDP, ZeRO-3): `module`'s
    #: tensors are shards or placeholders, so nothing may copy or read them as whole weights.
    shards_parameters = False
    #: True where the strategy needs torchrun's process group (every strategy but `single`).
    needs_torchrun = True

    def __init__(self) -> None:
        self.model: torch.nn.Module | None = None      # what the loop calls forward on
        self.module: torch.nn.Module | None = None     # the plain module underneath
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedule: torch.optim.lr_scheduler.LRScheduler | None = None
        self.device = torch.device("cpu")

    # --- processes ------------------------------------------------------------------------
    def setup(self) -> None:
        """Start the process group (if launched by torchrun) and pick this rank's device. A rank of a
        multi-process strategy on the CPU gives freed tensor memory back to the OS (engine/memory.py)."""
        distributed.init_process_group()
        self.device = distributed.default_device()
        if self.needs_torchrun and self.device.type == "cpu":
            memory.release_freed_memory()

    def check_launch(self) -> None:
        """Before training (not before a dry run, which builds on one process): a strategy that
        needs a process group refuses to start without torchrun, with the command that would work."""
        if self.needs_torchrun and not dist.is_initialized():
            raise ConfigError(f"the {self.name} strategy runs one process per rank under torchrun: "
                              f"{distributed.torchrun_command()} (or drop the strategy file to train in one process)")

    @property
    def rank(self) -> int:
        return distributed.rank()

    @property
    def world_size(self) -> int:
        return distributed.world_size()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        distributed.barrier()

    # --- model and optimizer ---------------------------------------------------------------
    @abc.abstractmethod
    def prepare(self, module: torch.nn.Module, make_optimizer: MakeOptimizer,
                make_schedule: MakeSchedule, settings: Any) -> torch.nn.Module:
        """Wrap `module` for this strategy, build optimizer and schedule; return the forward callable.

        `settings` is the run's `engine.trainer.Settings` (micro-batching, clipping, precision,
        compile), for strategies such as DeepSpeed that own those themselves.
        """

    def evaluating(self) -> contextlib.AbstractContextManager:
        """Context for evaluation: `module` holds whole weights inside it, so a task may call the
        methods a wrapper's forward hides (encode_image, rendering) and rank 0 may run alone."""
        return contextlib.nullcontext()

    def accumulating(self, last: bool) -> contextlib.AbstractContextManager:
        """Context for one micro-batch; `last` is False while gradients should stay local."""
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, accumulation_steps: int) -> None:
        (loss / accumulation_steps).backward()

    def parameters(self) -> Iterable[torch.nn.Parameter]:
        return self.module.parameters()

    def clip_gradients(self, max_norm: float | None) -> torch.Tensor | None:
        """Total gradient norm before clipping (clipping to `max_norm` if given)."""
        grads = [p for p in self.parameters() if p.grad is not None]
        if not grads:
            return torch.zeros((), device=self.device)
        limit = max_norm if max_norm is not None else math.inf
        return torch.nn.utils.clip_grad_norm_(grads, limit, foreach=True)

    def grad_norm_after_step(self) -> torch.Tensor | None:
        """For strategies that clip inside their own step (DeepSpeed): the norm it measured."""
        return None

    def optimizer_step(self) -> None:
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)

    def skip_step(self) -> None:
        """Drop this step's gradients without touching weights or the schedule."""
        self.optimizer.zero_grad(set_to_none=True)

    def schedule_state_dict(self) -> dict:
        """The schedule's counters; its multiplier function is rebuilt from the config instead."""
        state = self.schedule.state_dict()
        if "lr_lambdas" in state:
            state["lr_lambdas"] = [None] * len(state["lr_lambdas"])
        return state

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # --- collectives -----------------------------------------------------------------------
    def all_finite(self, *values: torch.Tensor | None) -> bool:
        """True on every rank if every value is finite on every rank."""
        present = [v.detach().float().reshape(-1) for v in values if v is not None]
        ok = torch.cat(present).isfinite().all() if present else torch.tensor(True)
        flag = ok.to(torch.float32, copy=True).to(self.device).reshape(1)
        if dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item() > 0)

    def reduce(self, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """Combine metrics across ranks in one all-reduce.

        Scalars are averaged; `Ratio`s are summed part by part, then divided; other values
        (images, text) pass through from this rank.
        """
        scalars = [k for k, v in metrics.items() if isinstance(v, (torch.Tensor, float, int))
                   and not isinstance(v, bool) and (not isinstance(v, torch.Tensor) or v.numel() == 1)]
        ratios = [k for k, v in metrics.items() if isinstance(v, Ratio)]
        out = {k: v for k, v in metrics.items() if k not in scalars and k not in ratios}
        if not scalars and not ratios:
            return out
        parts = [torch.as_tensor(metrics[k], dtype=torch.float64).detach().cpu().reshape(()) for k in scalars]
        for k in ratios:
            parts += [torch.tensor(float(metrics[k].numerator), dtype=torch.float64),
                      torch.tensor(float(metrics[k].denominator), dtype=torch.float64)]
        values = torch.stack(parts)
        world = self.world_size
        if dist.is_initialized() and world > 1:
            values = values.to(self.device)
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
            values = values.cpu()
        values = values.tolist()
        out.update({k: values[i] / world for i, k in enumerate(scalars)})
        offset = len(scalars)
        for j, k in enumerate(ratios):
            out[k] = Ratio(values[offset + 2 * j], values[offset + 2 * j + 1]).value
        return out

    # --- checkpoints -----------------------------------------------------------------------
    @abc.abstractmethod
    def save(self, directory: str, train_state: dict) -> None:
        """Write model, optimizer, schedule and this rank's `train_state` under `directory`."""

    @abc.abstractmethod
    def load(self, directory: str) -> dict:
        """Restore what `save` wrote; return this rank's train state."""

    def local_state_bytes(self) -> dict[str, int]:
        """Bytes of parameters and of optimizer state this rank holds (shows sharding is real)."""
        def local(t: torch.Tensor) -> torch.Tensor:
            return t.to_local() if hasattr(t, "to_local") else t

        params = sum(local(p).numel() * local(p).element_size() for p in self.module.parameters())
        state = sum(local(v).numel() * local(v).element_size() for s in self.optimizer.state.values()
                    for v in s.values() if isinstance(v, torch.Tensor))
        return {"parameters": int(params), "optimizer": int(state)}

    def save_rank_state(self, directory: str, train_state: dict) -> None:
        save_file(train_state, os.path.join(directory, RANK_STATE_FILE.format(rank=self.rank)))

    def load_rank_state(self, directory: str) -> dict:
        path = os.path.join(directory, RANK_STATE_FILE.format(rank=self.rank))
        if not os.path.isfile(path):
            warnings.warn(f"{path} is missing (the checkpoint was written by fewer ranks); "
                          "this rank continues with rank 0's RNG state")
            path = os.path.join(directory, RANK_STATE_FILE.format(rank=0))
        return load_file(path)


class ReplicatedStrategy(Strategy):
    """Strategies whose every rank holds the whole model (single, ddp, fairscale) share one
    checkpoint format: rank 0 writes model + optimizer + schedule to state.pt; every rank writes
    its own train state (RNG)."""

    def full_optimizer_state(self) -> dict | None:
        """The whole optimizer state on rank 0 (a collective where the state is sharded)."""
        return self.optimizer.state_dict()

    def save(self, directory: str, train_state: dict) -> None:
        optimizer_state = self.full_optimizer_state()
        if self.is_main:
            save_file({"model": self.module.state_dict(), "optimizer": optimizer_state,
                        "schedule": self.schedule_state_dict()}, os.path.join(directory, STATE_FILE))
        self.save_rank_state(directory, train_state)

    def load(self, directory: str) -> dict:
        state = load_file(os.path.join(directory, STATE_FILE))
        self.module.load_state_dict(state["model"])
        self.schedule.load_state_dict(state["schedule"])
        self.optimizer.load_state_dict(state["optimizer"])
        return self.load_rank_state(directory)


def load_file(path: str) -> Any:
    """Load a torch file without unpickling arbitrary objects; a file that is refused (a pickle
    that would import anything but tensors and plain containers, or not a torch file at all) is a
    RefusedFile in one line instead of torch's multi-line explanation."""
    import pickle
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        named = re.search(r"GLOBAL ([\w.]+)", text)  # "Unsupported global: GLOBAL x.y", "... GLOBAL x.y whose module"
        what = f"a pickle that would call {named.group(1)}" if named else "a pickle torch refuses to load safely"
        raise RefusedFile(f"{path} holds {what}: not loaded (only tensors and plain containers are), "
                          "nothing was run") from None
    except RuntimeError as error:
        if "PytorchStreamReader" not in str(error) and "zip archive" not in str(error):
            raise
        raise RefusedFile(f"{path} is not a readable torch file ({str(error).strip().splitlines()[0]}); "
                          "it was cut short or is not what its name says") from None


def save_file(value: Any, path: str) -> None:
    """torch.save through a Python file object: a full disk or a quota then raises OSError with
    its errno (ENOSPC, EDQUOT) instead of torch's '[enforce fail at inline_container.cc]'."""
    with open(path, "wb") as handle:
        torch.save(value, handle)
