"""Tasks over finite arrays (file data, scikit-learn digits): seeded per-epoch shuffling and
exact whole-split evaluation.

Training batch `i` takes positions [i*B, (i+1)*B) of an endless stream made of one seeded
permutation per epoch, so it is a pure function of (seed, split, i) and resumes exactly.
Evaluation walks the split once in order; accuracy is summed across ranks as a Ratio.
"""
from __future__ import annotations

import math
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from engine.data import Shard, batch_rng, device_of, take_slice, to_device, to_tensors
from engine.metrics import Ratio
from engine.task import Task
from tasks.common.classification import classification_loss, logits_of


def epoch_indices(n: int, seed: int, split: str, batch_size: int, index: int) -> np.ndarray:
    """Example indices of global training batch `index` over per-epoch permutations of n."""
    start, stop = index * batch_size, (index + 1) * batch_size
    out = []
    while start < stop:
        epoch, offset = divmod(start, n)
        order = batch_rng(seed, split, epoch).permutation(n)
        take = min(stop - start, n - offset)
        out.append(order[offset:offset + take])
        start += take
    return np.concatenate(out)


def shuffled_batches(arrays: Mapping[str, np.ndarray], split: str, shard: Shard) -> Iterator[dict[str, Any]]:
    """Endless training batches over `arrays` (all with the same first dimension)."""
    n = len(next(iter(arrays.values())))
    index = shard.start
    while True:
        chosen = epoch_indices(n, shard.seed, split, shard.batch_size, index)[shard.local_slice]
        yield to_tensors({k: v[chosen] for k, v in arrays.items()})
        index += 1


def ordered_batches(arrays: Mapping[str, np.ndarray], shard: Shard) -> Iterator[dict[str, Any]]:
    """One in-order pass over `arrays`; the last global batch may be short (ranks split it evenly)."""
    n = len(next(iter(arrays.values())))
    for start in range(0, n, shard.batch_size):
        stop = min(start + shard.batch_size, n)
        per_rank = math.ceil((stop - start) / shard.world_size)
        lo = start + shard.rank * per_rank
        where = slice(lo, min(lo + per_rank, stop))
        yield to_tensors(take_slice(dict(arrays), where))


class ArrayClassificationTask(Task):
    """A classification task over in-memory arrays: subclasses fill `self.splits[name]`
    with {'image' or 'tokens': ..., 'label': ...} and set `input_key`."""

    input_key = "image"

    def __init__(self) -> None:
        self.splits: dict[str, dict[str, np.ndarray]] = {}

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        if split not in self.splits:
            from engine.errors import ConfigError
            raise ConfigError(f"{type(self).__name__} has no split {split!r}; it has {sorted(self.splits)}")
        return self.splits[split]

    def batches(self, split, shard):
        return shuffled_batches(self.arrays(split), split, shard)

    def forward(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> Any:
        return model(batch[self.input_key])

    def loss(self, model, batch):
        return classification_loss(self.forward(model, batch), batch["label"])

    def evaluate(self, model, split, shard):
        device = device_of(model)
        correct = total = loss_sum = 0.0
        # Every rank runs the same number of forward passes (an empty slice included):
        # sharded strategies gather weights inside forward, collectively.
        for batch in ordered_batches(self.arrays(split), shard):
            batch = to_device(batch, device)
            logits = logits_of(self.forward(model, batch)).float()
            correct += float((logits.argmax(-1) == batch["label"]).sum())
            loss_sum += float(F.cross_entropy(logits, batch["label"], reduction="sum"))
            total += len(batch["label"])
        return {"accuracy": Ratio(correct, total), "loss": Ratio(loss_sum, total)}
