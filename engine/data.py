"""Helpers that make generated data a pure function of (seed, split, batch index, rank).

A task generates the *global* batch from a generator seeded by (seed, split, index) and keeps
its rank's slice, so one rank with batch b and two ranks with b/2 each see the same examples.
`unwrap` and `frozen` are for the models a task meets: the wrapped one it trains, fixed ones it holds.
"""
from __future__ import annotations

import dataclasses
import queue
import sys
import threading
import time
import zlib
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class Shard:
    """Which part of the global data stream this process reads.

    `batch_size` is the global batch; rank `rank` of `world_size` reads the slice
    `[rank * local, (rank + 1) * local)` of every global batch. `start` is the index of the
    first batch to yield (the data cursor of a resumed run).
    """

    batch_size: int
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    start: int = 0

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.world_size

    @property
    def local_slice(self) -> slice:
        n = self.local_batch_size
        return slice(self.rank * n, (self.rank + 1) * n)

    def replace(self, **changes: Any) -> "Shard":
        return dataclasses.replace(self, **changes)


def split_id(split: str) -> int:
    """A stable integer for a split name (Python's hash() is salted per process)."""
    return zlib.crc32(split.encode())


def batch_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for global batch `index` of `split`: independent of rank and world size."""
    return np.random.default_rng([seed, split_id(split), index])


def to_tensors(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """numpy arrays -> torch tensors (other values pass through)."""
    return {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
            for k, v in arrays.items()}


def take_slice(arrays: Mapping[str, Any], where: slice) -> dict[str, Any]:
    return {k: v[where] if isinstance(v, (np.ndarray, torch.Tensor)) else v for k, v in arrays.items()}


def generated_batches(make_batch: Callable[[np.random.Generator, int, int], Mapping[str, np.ndarray]],
                      split: str, shard: Shard) -> Iterator[dict[str, Any]]:
    """Yield this rank's slice of global batches built by `make_batch(rng, global_batch_size, index)`."""
    index = shard.start
    while True:
        arrays = make_batch(batch_rng(shard.seed, split, index), shard.batch_size, index)
        yield to_tensors(take_slice(arrays, shard.local_slice))
        index += 1


class Prefetched:
    """Iterates `iterator` up to `depth` items ahead in a background thread, so batch generation
    overlaps the training step; `depth` 0 reads it in the caller's thread, as before.

    Only timing changes: the same iterator yields the same items in the same order (a batch is a
    pure function of (seed, split, index, rank)). An error raised by the iterator is raised again,
    the same exception object, by the `next` call that would have returned that item. Use it as a
    context manager: leaving the `with` stops and joins the thread (after the item it is building,
    at most), so no thread outlives the loop. `wait_s` adds up the seconds `next` has waited.
    """

    _POLL_S = 0.05  # how often a blocked put or get checks whether the other side is gone

    def __init__(self, iterator: Iterator[Any], depth: int) -> None:
        self._iterator = iterator
        self.wait_s = 0.0
        self._done = False
        self._thread: threading.Thread | None = None
        if depth > 0:
            self._queue: queue.Queue = queue.Queue(maxsize=depth)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._fill, name="gintrain-prefetch", daemon=True)
            self._thread.start()

    def _put(self, entry: tuple[str, Any]) -> bool:
        """Put into the bounded queue unless `close` was called meanwhile; True when it went in."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=self._POLL_S)
                return True
            except queue.Full:
                pass
        return False

    def _fill(self) -> None:
        try:
            for item in self._iterator:
                if not self._put(("item", item)):
                    return
            self._put(("end", None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            self._put(("error", error))

    def _get(self) -> tuple[str, Any]:
        while True:
            try:
                return self._queue.get(timeout=self._POLL_S)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("the prefetch thread ended without a batch or an error") from None

    def __iter__(self) -> "Prefetched":
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        started = time.perf_counter()
        try:
            if self._thread is None:
                return next(self._iterator)
            kind, value = self._get()
        finally:
            self.wait_s += time.perf_counter() - started
        if kind == "item":
            return value
        self._done = True
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the thread, wait for it, and close the iterator (a generator's `finally` runs)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        close = getattr(self._iterator, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> "Prefetched":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def batch_length(batch: Mapping[str, Any]) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return value.shape[0]
    raise ValueError("a batch needs at least one tensor with a batch dimension")


def micro_batches(batch: Mapping[str, Any], count: int) -> list[dict[str, Any]]:
    """Split every tensor of a batch along dim 0 into `count` equal parts, one per micro-batch (a
    task may hold tensors of another length beside this rank's examples, e.g. GIFT's global targets)."""
    def part(value: Any, i: int) -> Any:
        if not (isinstance(value, torch.Tensor) and value.dim() > 0):
            return value
        step = value.shape[0] // count
        return value[i * step:(i + 1) * step]

    return [{k: part(v, i) for k, v in batch.items()} for i in range(count)]


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def device_of(model: torch.nn.Module) -> torch.device:
    """Where a (possibly wrapped) model's parameters live."""
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def follow(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move a helper model a task holds (a frozen teacher) to where the batch lives.

    The engine places the trained model and the batches; a task's own models stay wherever they
    were built until the first batch shows the device (CPU for the pre-flight check, then the
    strategy's device), and they move once, not per step.
    """
    if device_of(module) != device:
        module.to(device)
    return module


# (library, class, attribute) of every wrapper a strategy puts around the model. A library that
# is not loaded cannot have wrapped it, so none is imported here. FSDP2's fully_shard does not
# wrap: it changes the module in place and returns it.
_WRAPPERS = (("torch.nn.parallel", "DistributedDataParallel", "module"),
             ("torch.nn.parallel", "DataParallel", "module"),
             ("deepspeed", "DeepSpeedEngine", "module"),
             ("fairscale.nn.data_parallel", "ShardedDataParallel", "module"),
             ("torch._dynamo.eval_frame", "OptimizedModule", "_orig_mod"))  # torch.compile


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under any stack of DDP / DeepSpeed / fairscale / torch.compile wrappers.

    By type, not by attribute name, so a model with a child called `module` stays whole. See
    `engine.task.Task` for when a task may call past the wrapper.
    """
    while True:
        for library, name, attribute in _WRAPPERS:
            wrapper = getattr(sys.modules.get(library), name, None)
            if wrapper is not None and isinstance(model, wrapper):
                model = getattr(model, attribute)
                break
        else:
            return model


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    """`module` in eval mode with gradients off, in place: a fixed network a task or model holds
    (a teacher, a finished stage's decoder, a metric's classifier, a frozen backbone). A caller
    that still trains the original passes a copy."""
    module.eval()
    module.requires_grad_(False)
    return module
