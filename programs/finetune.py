"""The `finetune` program: pre-train (or take a given checkpoint), then fine-tune a copy of those
weights on each downstream task, every stage a `train` call in its own gin scope and sub-folder.

    run.program = @finetune
    finetune.downstream = ['topic', 'reversed']
    pretrain/train.task = @SpanCorruption()
    topic/train.task = @topic/LatentStructure()
"""
from __future__ import annotations

from typing import Sequence

import gin

from engine.errors import ConfigError
from engine.program import TrainResult, stage, staged_report, train


class Stages(dict[str, TrainResult]):
    """The TrainResult of every stage that ran, by name in order."""

    @property
    def report(self) -> str | None:
        """Under a dry run, every stage's report."""
        return staged_report(self) if any(r.dry_run for r in self.values()) else None


@gin.configurable
def finetune(*, downstream: Sequence[str] = ("finetune",), checkpoint: str | None = None) -> Stages:
    """Stage 'pretrain' (skipped when `checkpoint` is given), then one stage per downstream name,
    each starting from the pre-trained weights through `train.init_from`."""
    if isinstance(downstream, str) or not all(isinstance(name, str) and name for name in downstream):
        raise ConfigError(f"finetune.downstream must be a list of stage names, got {downstream!r}")
    if "pretrain" in downstream:
        raise ConfigError("finetune.downstream cannot name 'pretrain' (that stage is the pre-training run)")
    results = Stages()
    if checkpoint is None:
        with stage("pretrain"):
            results["pretrain"] = train()
        if not results["pretrain"].finished and not results["pretrain"].dry_run:
            return results  # stopped by a signal: the same command resumes it
        checkpoint = results["pretrain"].checkpoint  # None after a dry run: each stage is checked from scratch
    for name in downstream:
        with stage(name):
            results[name] = train(init_from=checkpoint)
        if not results[name].finished and not results[name].dry_run:
            return results
    return results
