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
from engine.program import TrainResult, stage, train


@gin.configurable
def finetune(*, downstream: Sequence[str] = ("finetune",), checkpoint: str | None = None) -> dict[str, TrainResult]:
    """Stage 'pretrain' (skipped when `checkpoint` is given), then one stage per downstream name,
    each starting from the pre-trained weights through `train.init_from`."""
    if isinstance(downstream, str) or not all(isinstance(name, str) and name for name in downstream):
        raise ConfigError(f"finetune.downstream must be a list of stage names, got {downstream!r}")
    if "pretrain" in downstream:
        raise ConfigError("finetune.downstream cannot name 'pretrain' (that stage is the pre-training run)")
    results: dict[str, TrainResult] = {}
    if checkpoint is None:
        with stage("pretrain"):
            results["pretrain"] = train()
        checkpoint = results["pretrain"].checkpoint
    for name in downstream:
        with stage(name):
            results[name] = train(init_from=checkpoint)
    return results
