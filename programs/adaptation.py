"""Gradual domain adaptation programs: train on the source, then rounds of self-training in which
each round's student becomes the next round's teacher.

`self_training` re-labels the target every round, `gradual_self_training` walks through real
intermediate domains (Kumar et al. 2020), and `gift` walks through interpolated hidden states
when no intermediate domains exist (Abnar et al. 2021). Every stage is a call to
`engine.program.train` inside `engine.program.stage`, so each one logs, checkpoints and resumes
like any run, and a restarted program skips the rounds that already finished.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any, Callable, Sequence

import gin
import torch

from engine import checkpoint, config, distributed
from engine.errors import ConfigError, require
from engine.program import TrainResult, stage, train
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

    @property
    def target_accuracy(self) -> list[float]:
        return [r.accuracy[TARGET] for r in self.rounds]


# A round's task, built from the teacher (the previous stage's model).
MakeTask = Callable[[torch.nn.Module], Task]


def make_teacher(result: TrainResult, teacher_from: str) -> torch.nn.Module:
    """A frozen copy of a finished stage's model: its weights in memory, or read back from its
    consolidated checkpoint (the same weights, and the path that works under any strategy)."""
    teacher = copy.deepcopy(result.model)
    if teacher_from == "checkpoint":
        if result.checkpoint is None:
            raise ConfigError(f"stage {result.workdir!r} wrote no checkpoint to load the teacher from")
        teacher.load_state_dict(checkpoint.load_weights(result.checkpoint))
    return teacher


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
    require(isinstance(eval_every, int) and eval_every > 0,
            f"{program} reads every stage's accuracy from its final evaluation: bind train.eval_every > 0")
    return domains


def _configured_model() -> torch.nn.Module | None:
    """The model `train.model` builds, so settings that depend on it fail before any training
    (`train` reseeds before building its own, so this costs nothing in reproducibility)."""
    try:
        model = config.built("train.model")
    except ValueError:
        return None
    return model if isinstance(model, torch.nn.Module) else None


def _check_rounds(name: str, value: Any) -> int:
    require(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            f"{name} must be an integer >= 1, got {value!r}")
    return value


def _accuracy(result: TrainResult, domains: DomainShiftTask, stage_name: str) -> dict[str, float]:
    missing = [d for d in domains.eval_splits if "accuracy" not in result.metrics.get(d, {})]
    if missing:
        raise ConfigError(f"stage {stage_name!r} has no final evaluation of {missing}; bind train.eval_every > 0")
    return {d: float(result.metrics[d]["accuracy"]) for d in domains.eval_splits}


def _write_summary(parent: str, rounds: Sequence[Round]) -> None:
    if distributed.rank() != 0:
        return
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, SUMMARY_FILE + ".tmp")
    with open(tmp, "w") as handle:
        json.dump([dataclasses.asdict(r) for r in rounds], handle, indent=1)
    os.replace(tmp, os.path.join(parent, SUMMARY_FILE))


def adapt(domains: DomainShiftTask, plan: Sequence[tuple[str, str, float | None, MakeTask]], *,
          teacher_from: str, source_workdir: str | None) -> AdaptationResult:
    """Train the source stage, then each (stage, domain, lambda mean, make_task) of `plan` in turn,
    each student starting from the previous stage's weights and taught by the previous model."""
    eval_splits = domains.eval_splits
    with stage(SOURCE) as source_dir:
        # A shared `source_workdir` lets several programs reuse one trained source model.
        result = train(task=domains, eval_splits=eval_splits, workdir=source_workdir or source_dir)
    parent = os.path.dirname(source_dir)
    rounds = [Round(SOURCE, SOURCE, None, _accuracy(result, domains, SOURCE))]
    _write_summary(parent, rounds)
    for name, domain, lambda_mean, make_task in plan:
        teacher = make_teacher(result, teacher_from)
        with stage(name):
            result = train(task=make_task(teacher), init_from=result.checkpoint, eval_splits=eval_splits)
        rounds.append(Round(name, domain, lambda_mean, _accuracy(result, domains, name)))
        _write_summary(parent, rounds)  # after every stage, so a long program shows its progress
    return AdaptationResult(rounds=rounds, final=result)


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
    rounds = _check_rounds("self_training.rounds", rounds)
    return adapt(domains, _self_training_plan(domains, [TARGET], rounds), teacher_from=teacher_from,
                 source_workdir=source_workdir)


@gin.configurable
def gradual_self_training(*, domains: Any = gin.REQUIRED, rounds_per_domain: int = 1,
                          teacher_from: str = "checkpoint", source_workdir: str | None = None) -> AdaptationResult:
    """Source training, then self-training on each real intermediate domain in shift order and
    finally on the target (Kumar et al. 2020): the oracle path GIFT imitates without the data."""
    domains = _check_common(domains, teacher_from, "gradual_self_training")
    repeats = _check_rounds("gradual_self_training.rounds_per_domain", rounds_per_domain)
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
    rounds = _check_rounds("gift.rounds", rounds)

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
