"""Classification tasks whose examples carry a complexity level (PVR window, C-PVR hops).

Training draws levels from `train_levels`; evaluation balances `eval_levels` and reports
accuracy (and ponder steps, if the model returns them) per level, in and out of the training
range, plus plots of both against the level.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine import summaries
from engine.data import device_of, to_device
from engine.errors import ConfigError
from engine.metrics import Ratio
from engine.task import Shard, Task
from tasks.classification import classification_loss, logits_of


def check_range(name: str, levels: tuple[int, int], lowest: int, highest: int) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in levels)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a (low, high) pair, got {levels!r}") from None
    if not lowest <= lo <= hi <= highest:
        raise ConfigError(f"{name} = ({lo}, {hi}) must satisfy {lowest} <= low <= high <= {highest}")
    return lo, hi


def balanced_levels(levels: tuple[int, int], size: int, index: int) -> np.ndarray:
    """Levels of global eval batch `index`: every level equally often, in a fixed order."""
    lo, hi = levels
    return lo + (np.arange(size) + index * size) % (hi - lo + 1)


class LeveledClassificationTask(Task):
    """Base for tasks with a per-example `level` (batch key `level`)."""

    level_name = "level"
    train_levels: tuple[int, int] = (1, 1)
    eval_levels: tuple[int, int] = (1, 1)
    eval_examples_per_level: int = 256

    def forward(self, model: torch.nn.Module, batch: dict) -> Any:
        return model(batch["tokens"], batch.get("mask"))

    def loss(self, model, batch):
        return classification_loss(self.forward(model, batch), batch["label"])

    def eval_batch_count(self, shard: Shard) -> int:
        lo, hi = self.eval_levels
        return math.ceil(self.eval_examples_per_level * (hi - lo + 1) / shard.batch_size)

    def evaluate(self, model, split, shard):
        lo, hi = self.eval_levels
        levels = range(lo, hi + 1)
        correct = {k: 0.0 for k in levels}
        count = {k: 0.0 for k in levels}
        ponder = {k: 0.0 for k in levels}
        loss_sum, has_ponder = 0.0, False
        batches = self.batches(split, shard.replace(start=0))
        device = device_of(model)
        for _, batch in zip(range(self.eval_batch_count(shard)), batches):
            batch = to_device(batch, device)
            output = self.forward(model, batch)
            logits = logits_of(output).float()
            labels, level = batch["label"], batch["level"]
            hits = (logits.argmax(-1) == labels).float()
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            steps = output.get("ponder") if isinstance(output, dict) else None
            has_ponder = has_ponder or steps is not None
            for k in levels:
                where = level == k
                correct[k] += float(hits[where].sum())
                count[k] += float(where.sum())
                if steps is not None:
                    ponder[k] += float(steps.float()[where].sum())
        metrics: dict[str, Any] = {"loss": Ratio(loss_sum, sum(count.values()))}
        train_lo, train_hi = self.train_levels
        inside = [k for k in levels if train_lo <= k <= train_hi]
        outside = [k for k in levels if k not in inside]
        metrics["accuracy"] = Ratio(sum(correct.values()), sum(count.values()))
        for name, group in (("in_range", inside), ("out_of_range", outside)):
            if group:
                metrics[f"accuracy/{name}"] = Ratio(sum(correct[k] for k in group), sum(count[k] for k in group))
                if has_ponder:
                    metrics[f"ponder/{name}"] = Ratio(sum(ponder[k] for k in group), sum(count[k] for k in group))
        for k in levels:
            metrics[f"accuracy/{self.level_name}_{k}"] = Ratio(correct[k], count[k])
            if has_ponder:
                metrics[f"ponder/{self.level_name}_{k}"] = Ratio(ponder[k], count[k])
        return metrics

    def summarize(self, split, metrics):
        lo, hi = self.eval_levels
        if hi == lo:
            return {}
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        levels = list(range(lo, hi + 1))
        out = {}
        for kind in ("accuracy", "ponder"):
            values = [metrics.get(f"{kind}/{self.level_name}_{k}") for k in levels]
            if any(v is None for v in values):
                continue
            figure, axis = plt.subplots(figsize=(4, 3))
            axis.plot(levels, values, marker="o")
            axis.axvspan(self.train_levels[0] - 0.5, self.train_levels[1] + 0.5, alpha=0.15,
                         label="training range")
            axis.set_xlabel(self.level_name)
            axis.set_ylabel(kind)
            axis.legend(loc="best")
            figure.tight_layout()
            out[f"{kind}_vs_{self.level_name}"] = summaries.Figure(figure)
        return out
