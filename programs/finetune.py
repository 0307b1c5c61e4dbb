"""The `finetune` program: pre-train (or take a given checkpoint), then fine-tune a copy of those
weights on each downstream task, every stage a `train` call in its own gin scope and sub-folder.

    run.program = @finetune
    finetune.downstream = ['topic', 'reversed']
    pretrain/train.task = @SpanCorruption()
    topic/train.task = @topic/LatentStructure()
"""
from __future__ import annotations

import contextlib
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
            if results["pretrain"].step < configured_steps():
                return results  # stopped by a signal: the same command resumes it
        checkpoint = results["pretrain"].checkpoint
    for name in downstream:
        with stage(name):
            results[name] = train(init_from=checkpoint)
            if results[name].step < configured_steps():
                return results
    return results


def configured_steps(scope: str | None = None) -> int:
    """`train.steps` as gin binds it in `scope` (default: the current scope), macros resolved.
    References are not resolved in general: that would build the task or model as a side effect."""
    with gin.config_scope(scope) if scope else contextlib.nullcontext():
        steps = gin.get_bindings("train", resolve_references=False).get("steps")
        if isinstance(steps, gin.config.ConfigurableReference) and steps.configurable.name == "macro":
            steps = steps.scoped_configurable_fn()
    return int(steps)
