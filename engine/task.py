"""The task contract: data, objective and metrics for one problem.

A task never touches devices or ranks beyond the `Shard` it is handed: batch `i` of rank `r`
is a pure function of `(seed, split, i, r)`, so a resumed run sees exactly the batches an
uninterrupted one would have seen, and `w` ranks together see the batch one rank would.
"""
from __future__ import annotations

import abc
from typing import Any, Iterator, Mapping

import torch

from engine.data import Shard, device_of, to_device

Batch = Mapping[str, Any]


class Task(abc.ABC):
    """Owns a problem's data, objective and metrics. Subclasses are gin-configurable.

    The `model` that `loss` and `evaluate` receive is the one the strategy runs, possibly inside
    a wrapper (DDP, DeepSpeed, fairscale, torch.compile; FSDP2 shards the module in place). Call
    it through its forward: that call is where DDP arms the all-reduce of the gradients it makes,
    where FSDP and ZeRO-3 gather the sharded weights, and what compile compiled.
    `engine.data.unwrap(model)` gives the plain module. A task may use it to read attributes
    (shapes to check) and, at evaluation time only, to call methods the wrapper's forward hides
    (`encode_image`, `render_frames`). Never to compute the training loss: gradients made past
    the forward are not averaged across ranks, so the replicas drift apart, and under FSDP or
    ZeRO-3 such a call may meet weights that were never gathered.
    """

    #: How many global batches the default `evaluate` averages over.
    eval_batches: int = 8

    @abc.abstractmethod
    def batches(self, split: str, shard: Shard) -> Iterator[Batch]:
        """Yield this rank's part of global batches `shard.start, shard.start + 1, ...`.

        The training iterator runs in a background thread, ahead of the step (`train.prefetch`),
        so it must depend only on (seed, split, index, rank): no model, step or global RNG.
        """

    @abc.abstractmethod
    def loss(self, model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training objective on one micro-batch and the metrics to log with it."""

    def evaluate(self, model: torch.nn.Module, split: str, shard: Shard) -> dict[str, Any]:
        """Metrics on `split`: by default the mean of `loss`'s metrics over `eval_batches` batches.

        Values may be scalars (reduced across ranks by the engine), `engine.metrics.Ratio`s,
        or `engine.summaries` objects (images, figures, text) that rank 0 writes to TensorBoard.
        Every rank must run the same number of forward passes: sharded strategies (FSDP,
        ZeRO-3) gather weights inside forward, collectively.
        """
        totals: dict[str, torch.Tensor] = {}
        count = 0
        device = device_of(model)
        batches = self.batches(split, shard.replace(start=0))
        for _, batch in zip(range(self.eval_batches), batches):
            loss, metrics = self.loss(model, to_device(batch, device))
            for name, value in {"loss": loss, **metrics}.items():
                totals[name] = totals.get(name, 0.0) + value.detach().float()
            count += 1
        return {name: value / max(count, 1) for name, value in totals.items()}

    def summarize(self, split: str, metrics: dict[str, Any]) -> dict[str, Any]:
        """Plots or images built from the reduced metrics of `split` (called on rank 0 only)."""
        return {}

    def tokens(self, batch: Batch) -> int | None:
        """How many tokens a batch holds, for tokens/s; None where the notion does not apply."""
        return None

    def example_batch(self, batch_size: int = 1) -> Batch:
        """A small training batch, used to count FLOPs and to check shapes before training."""
        return next(iter(self.batches("train", Shard(batch_size=batch_size))))
