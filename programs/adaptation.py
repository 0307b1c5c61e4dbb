"""Gradual domain adaptation programs: train on the source, then rounds of self-training in which
each round's student becomes the next round's teacher.

`self_training` re-labels the target every round, `gradual_self_training` walks through real
intermediate domains (Kumar et al. 2020), and `gift` walks through interpolated hidden states
when no intermediate domains exist (Abnar et al. 2021). Every stage is a call to
`engine.program.train` inside `engine.program.stage`, so each one logs, checkpoints and resumes
like any run, and a restarted program skips the rounds that already finished.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Sequence

import gin
import torch

from engine import config, distributed
from engine.errors import ConfigError, require, require_int
from engine.files import write_atomically
from engine.program import TrainResult, stage, staged_report, train
from engine.task import Task
from tasks.adaptation.domain_shift import SOURCE, TARGET, DomainShiftTask
from tasks.adaptation.gift import GiftTask
from tasks.adaptation.pseudo_labels import PseudoLabelTask

TEACHER_SOURCES = ("checkpoint", "model")
SUMMARY_FILE = "adaptation.json"


@dataclasses.dataclass
class Round:
    """One stage of a program: where it trained and what it reached on every domain's test set."""

    stage: str
    domain: str
    lambda_mean: float | None
    accuracy: dict[str, float]


@dataclasses.dataclass
class AdaptationResult:
    """Every stage in order (the source stage first) and the last stage's TrainResult."""

    rounds: list[Round]
    final: TrainResult
    report: str | None = None  # under a dry run, every stage's report (and no rounds)

    @property
    def target_accuracy(self) -> list[float]:
        return [r.accuracy[TARGET] for r in self.rounds]


# A round's task, built from the teacher (the previous stage's model).
MakeTask = Callable[[torch.nn.Module], Task]


def _check_common(domains: Any, teacher_from: str, program: str) -> DomainShiftTask:
    if not isinstance(domains, DomainShiftTask):
        raise ConfigError(f"{program}.domains must be a domain-shift task such as @RotatedDigits(), "
                          f"got {type(domains).__name__}")
    require(domains.train_domain == SOURCE,
            f"{program} trains its first stage on the source, so {type(domains).__name__}.train_domain must "
            f"be 'source' (got {domains.train_domain!r}; 'target' is the oracle baseline, a plain train run)")
    require(teacher_from in TEACHER_SOURCES,
            f"{program}.teacher_from must be one of {TEACHER_SOURCES}, got {teacher_from!r}")
    try:
        eval_every = gin.query_parameter("train.eval_every")
    except ValueError:
        eval_every = 0
    require_int(eval_every, "train.eval_every", low=1,
                hint=f"{program} reads every stage's accuracy from its final evaluation")
    return domains


def _configured_model() -> torch.nn.Module | None:
    """The model `train.model` builds, so settings that depend on it fail before any training
    (`train` reseeds before building its own, so this costs nothing in reproducibility)."""
    try:
        model = config.built("train.model")
    except ValueError:
        return None
    return model if isinstance(model, torch.nn.Module) else None


def _accuracy(result: TrainResult, domains: DomainShiftTask, stage_name: str) -> dict[str, float]:
    missing = [d for d in domains.eval_splits if "accuracy" not in result.metrics.get(d, {})]
    if missing:
        raise ConfigError(f"stage {stage_name!r} has no final evaluation of {missing}; bind train.eval_every > 0")
    return {d: float(result.metrics[d]["accuracy"]) for d in domains.eval_splits}


def _write_summary(parent: str, rounds: Sequence[Round]) -> None:
    if distributed.rank() != 0:
        return
    write_atomically(os.path.join(parent, SUMMARY_FILE), json.dumps([dataclasses.asdict(r) for r in rounds], indent=1))


def adapt(domains: DomainShiftTask, plan: Sequence[tuple[str, str, float | None, MakeTask]], *,
          teacher_from: str, source_workdir: str | None) -> AdaptationResult:
    """Train the source stage, then each (stage, domain, lambda mean, make_task) of `plan` in turn,
    each student starting from the previous stage's weights and taught by the previous model."""
    eval_splits = domains.eval_splits
    with stage(SOURCE) as source_dir:
        # A shared `source_workdir` lets several programs reuse one trained source model.
        result = train(task=domains, eval_splits=eval_splits, workdir=source_workdir or source_dir)
    parent = os.path.dirname(source_dir)
    stages, rounds = {SOURCE: result}, []
    for name, domain, lambda_mean, make_task in [(SOURCE, SOURCE, None, None), *plan]:
        if make_task is not None:
            # The teacher: the previous stage's weights as its checkpoint holds them, or in memory.
            teacher = result.frozen_model(from_checkpoint=teacher_from == "checkpoint")
            with stage(name):
                result = stages[name] = train(task=make_task(teacher), init_from=result.checkpoint,
                                              eval_splits=eval_splits)
        if result.dry_run:
            continue  # --print-config: check every stage, record none
        if not result.finished:
            break  # stopped by a signal: the same command resumes it
        rounds.append(Round(name, domain, lambda_mean, _accuracy(result, domains, name)))
        _write_summary(parent, rounds)  # after every stage, so a long program shows its progress
    return AdaptationResult(rounds=rounds, final=result, report=staged_report(stages) if result.dry_run else None)


def _self_training_plan(domains: DomainShiftTask, sequence: Sequence[str], repeats: int):
    def task_for(domain: str) -> MakeTask:
        return lambda teacher: PseudoLabelTask(domains, teacher, domain=domain)
    stages = [domain for domain in sequence for _ in range(repeats)]
    return [(f"round_{k}", domain, None, task_for(domain)) for k, domain in enumerate(stages, start=1)]


@gin.configurable
def self_training(*, domains: Any = gin.REQUIRED, rounds: int = 5, teacher_from: str = "checkpoint",
                  source_workdir: str | None = None) -> AdaptationResult:
    """Source training, then `rounds` rounds of self-training directly on the target.

    Each round the current model labels target batches (dropping the least confident
    fraction, `PseudoLabelTask.drop_fraction`) and a student continuing from it learns them.
    """
    domains = _check_common(domains, teacher_from, "self_training")
    rounds = require_int(rounds, "self_training.rounds", low=1)
    return adapt(domains, _self_training_plan(domains, [TARGET], rounds), teacher_from=teacher_from,
                 source_workdir=source_workdir)


@gin.configurable
def gradual_self_training(*, domains: Any = gin.REQUIRED, rounds_per_domain: int = 1,
                          teacher_from: str = "checkpoint", source_workdir: str | None = None) -> AdaptationResult:
    """Source training, then self-training on each real intermediate domain in shift order and
    finally on the target (Kumar et al. 2020): the oracle path GIFT imitates without the data."""
    domains = _check_common(domains, teacher_from, "gradual_self_training")
    repeats = require_int(rounds_per_domain, "gradual_self_training.rounds_per_domain", low=1)
    require(len(domains.intermediate_domains) > 0,
            f"gradual_self_training needs real intermediate domains: bind "
            f"{type(domains).__name__}.intermediate_domains >= 1 (or use self_training)")
    sequence = [*domains.intermediate_domains, TARGET]
    return adapt(domains, _self_training_plan(domains, sequence, repeats), teacher_from=teacher_from,
                 source_workdir=source_workdir)


@gin.configurable
def gift(*, domains: Any = gin.REQUIRED, rounds: int = 5, teacher_from: str = "checkpoint",
         source_workdir: str | None = None) -> AdaptationResult:
    """Source training, then `rounds` GIFT rounds whose interpolation moves towards the target
    (`GiftTask.lambdas`); the mixing itself is configured on `GiftTask`."""
    domains = _check_common(domains, teacher_from, "gift")
    rounds = require_int(rounds, "gift.rounds", low=1)

    def task_for(k: int) -> MakeTask:
        return lambda teacher: GiftTask(domains, teacher, round_index=k, rounds=rounds)

    with gin.config_scope("round_1"):  # GiftTask's settings as the first round will read them
        check = GiftTask(domains, torch.nn.Identity(), round_index=0, rounds=rounds)
        model = _configured_model()
    if model is not None:
        check.check_model(model)
    lambdas = check.lambdas
    plan = [(f"round_{k + 1}", TARGET, lambdas.mean(k, rounds), task_for(k)) for k in range(rounds)]
    return adapt(domains, plan, teacher_from=teacher_from, source_workdir=source_workdir)
