"""The `distill` program: get a teacher (train it, or load trained weights), then train a
student on the `Distillation` objective. Selected with `run.program = @distill`.

Both stages are ordinary `engine.program.train` runs inside `engine.program.stage` (gin scopes
`teacher/` and `student/`, sub-folders `<workdir>/teacher` and `<workdir>/student`), so each
resumes, logs and checkpoints like any run. The teacher may be of another model family.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import gin
import torch

from engine import checkpoint
from engine.errors import ConfigError, require_int
from engine.program import TrainResult, stage, staged_report, train
from engine.task import Task
from tasks.common.distillation import Distillation


def resolve_weights(path: str) -> str:
    """A checkpoint folder, a run folder (its latest checkpoint) or a weights file."""
    if os.path.isdir(path):
        return checkpoint.resolve(path, name="distill.teacher_weights", hint="a .safetensors export works too")
    if not os.path.exists(path):
        raise ConfigError(f"distill.teacher_weights: no such file or folder {path!r}")
    return path


def load_teacher(make_teacher: Callable[[], torch.nn.Module], path: str) -> torch.nn.Module:
    """Build the teacher (gin scope `teacher/`) and load its weights from `path`, strictly."""
    with gin.config_scope("teacher"):
        model = make_teacher()
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(f"distill.teacher must build an nn.Module, got {type(model).__name__}")
    weights = checkpoint.load_weights(resolve_weights(path))
    hint = "bind the teacher's shapes under teacher/ (e.g. teacher/MLP.hidden = ...)"
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # same names, other shapes
        detail = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error))
        raise ConfigError(f"the teacher weights in {path!r} do not fit distill.teacher "
                          f"({type(model).__name__}): {detail}; {hint}") from None
    if missing or unexpected:
        raise ConfigError(f"the teacher weights in {path!r} do not fit distill.teacher "
                          f"({type(model).__name__}): missing {list(missing)[:5]}, unexpected "
                          f"{list(unexpected)[:5]}; {hint}")
    return model


@gin.configurable
def distill(*, task: Any = gin.REQUIRED, teacher: Callable[[], torch.nn.Module] = gin.REQUIRED,
            teacher_weights: str | None = None,
            objective: Callable[..., Distillation] = Distillation, teacher_seed_offset: int = 0) -> TrainResult:
    """Teacher stage, then student stage; returns the student's TrainResult (the teacher's when
    a signal stopped the teacher: the same command resumes it).

    task: the task both models solve (e.g. @DigitsOnCanvas()); the student trains on
        `objective(task=task)` (Distillation: alpha, temperature, scaling are its bindings).
    teacher: the teacher's model factory (e.g. @SmallCNN); its shapes may be bound under
        `teacher/`, the student's model is `train.model` as usual.
    teacher_weights: a run folder, a checkpoint folder or a .safetensors export to load the
        teacher from; None trains it first in stage `teacher` (`teacher/train.steps = ...`).
    teacher_seed_offset: the teacher stage trains with its `train.seed` plus this offset, so a
        same-family student never starts at its teacher's initialisation, at every seed a study
        binds (a fixed `teacher/train.seed` would give every seed the same teacher).
    """
    inner = task() if callable(task) and not isinstance(task, Task) else task
    if not isinstance(inner, Task):
        raise ConfigError(f"distill.task must build an engine.task.Task, got {type(inner).__name__}")
    if not callable(teacher):
        raise ConfigError(f"distill.teacher must be a model factory like @SmallCNN, got {teacher!r}")
    offset = require_int(teacher_seed_offset, "distill.teacher_seed_offset", low=0)
    # Build (and so validate) the student's objective before spending time on the teacher.
    with gin.config_scope("student"):
        student_task = objective(task=inner)
    if teacher_weights is None:
        with stage("teacher"):
            seed = gin.get_bindings("train", resolve_references=False).get("seed", 0)
            trained = train(task=inner, model=teacher, **({"seed": seed + offset} if offset else {}))
        if trained.dry_run:  # --print-config: check the student against the untrained teacher
            student_task.use_teacher(trained.model)
            with stage("student"):
                student = train(task=student_task)
            return dataclasses.replace(student, report=staged_report({"teacher": trained, "student": student}))
        if not trained.finished:
            return trained  # stopped by a signal: the same command resumes it
        # Reload from the consolidated checkpoint: a plain module, whatever the strategy was.
        teacher_weights = trained.checkpoint
    student_task.use_teacher(load_teacher(teacher, teacher_weights))
    with stage("student"):
        return train(task=student_task)
