"""Classification tasks whose examples carry a complexity level (PVR window, C-PVR hops).

Training draws levels from `train_levels`; evaluation balances `eval_levels` and reports
accuracy (and ponder steps, if the model returns them) per level, in and out of the training
range, plus plots of both against the level, and a heat map of ponder steps over positions for
models that return one.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine import summaries
from engine.data import Shard, device_of, to_device
from engine.metrics import Ratio
from engine.task import Task
from tasks.common.classification import classification_loss, logits_of


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
    #: Rows of the ponder heat map (first eval batch; one level after another).
    heatmap_examples: int = 8

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
        # sums[name][level] = [numerator, denominator] for accuracy, ponder and accuracy on subsets.
        sums: dict[str, dict[int, list[float]]] = {}

        def add(name: str, values: torch.Tensor, level: torch.Tensor, where: torch.Tensor | None = None) -> None:
            table = sums.setdefault(name, {k: [0.0, 0.0] for k in levels})
            values = values.float()
            for k in levels:
                chosen = (level == k) if where is None else (level == k) & where
                table[k][0] += float(values[chosen].sum())
                table[k][1] += float(chosen.sum())

        loss_sum = 0.0
        batches = self.batches(split, shard.replace(start=0))
        device = device_of(model)
        heatmap = None
        for index, (_, batch) in enumerate(zip(range(self.eval_batch_count(shard)), batches)):
            batch = to_device(batch, device)
            output = self.forward(model, batch)
            if index == 0:
                heatmap = self.ponder_heatmap(batch, output)
            logits = logits_of(output).float()
            labels, level = batch["label"], batch["level"]
            hits = (logits.argmax(-1) == labels).float()
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            add("accuracy", hits, level)
            steps = output.get("ponder") if isinstance(output, dict) else None
            if steps is not None:
                add("ponder", steps, level)
            for group, where in self.example_groups(batch).items():
                add(f"accuracy_{group}", hits, level, where)
        total = sum(count for _, count in sums["accuracy"].values())
        metrics: dict[str, Any] = {"loss": Ratio(loss_sum, total)}
        train_lo, train_hi = self.train_levels
        inside = [k for k in levels if train_lo <= k <= train_hi]
        outside = [k for k in levels if k not in inside]
        for name, table in sums.items():
            if name != "ponder":
                metrics[name] = Ratio(sum(v[0] for v in table.values()), sum(v[1] for v in table.values()))
            for range_name, group in (("in_range", inside), ("out_of_range", outside)):
                if group:
                    metrics[f"{name}/{range_name}"] = Ratio(sum(table[k][0] for k in group),
                                                            sum(table[k][1] for k in group))
            for k in levels:
                metrics[f"{name}/{self.level_name}_{k}"] = Ratio(*table[k])
        if heatmap is not None:
            metrics["ponder_map"] = heatmap
        return metrics

    def example_groups(self, batch: dict) -> dict[str, torch.Tensor]:
        """Named boolean subsets of an eval batch whose accuracy is also reported per level."""
        return {}

    def chain(self, tokens: np.ndarray) -> list[int]:
        """Positions that matter for an example (framed in the ponder heat map); none by default."""
        return []

    def ponder_heatmap(self, batch: dict, output: Any) -> summaries.Image | None:
        """Ponder steps over positions for one example of each level of the first eval batch,
        when the model returns a per-position 'ponder_map' for token inputs."""
        steps = output.get("ponder_map") if isinstance(output, dict) else None
        if steps is None or "tokens" not in batch or self.heatmap_examples <= 0:
            return None
        from tasks.common.ponder_maps import ponder_heatmap
        tokens = batch["tokens"][: self.heatmap_examples].cpu().numpy()
        levels = batch["level"][: len(tokens)].tolist()
        labels = [f"{self.level_name} {k}" for k in levels]
        highlights = [self.chain(row) for row in tokens]
        return ponder_heatmap(steps[: len(tokens)].float().cpu().numpy(), tokens, labels, highlights)

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
