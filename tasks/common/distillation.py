"""Knowledge distillation as a task wrapper: the student's objective is
alpha * KD(teacher, student; T) + (1 - alpha) * (the wrapped task's own loss).

The engine's `Task.loss(model, batch)` sees only the student, so the frozen teacher lives here,
in the objective, and the training loop stays the same for distillation as for anything else.
The gold loss is the wrapped task's loss, called unchanged; its metrics are logged as usual.
"""
from __future__ import annotations

from typing import Any

import gin
import torch

from engine import summaries
from engine.data import Shard, device_of, follow, frozen
from engine.errors import ConfigError, require, require_int, require_number
from engine.task import Task
from tasks.common import similarity
from tasks.common.classification import aux_loss_of, logits_of
from tasks.common.recording import CallRecorder

#: How the KD term is scaled by the temperature T:
#: Hinton et al. multiply by T^2 so its gradients keep their size as T grows; Abnar et al.'s
#: Reflect code divides by T^2; 'none' leaves it as is.
SCALINGS = {"t_squared": lambda t: t * t, "inverse_t_squared": lambda t: 1.0 / (t * t), "none": lambda t: 1.0}


def check_distillation(alpha: float, temperature: float, scaling: str) -> None:
    """ConfigError unless 0 <= alpha <= 1, T > 0 and the scaling is known."""
    require_number(alpha, "Distillation.alpha", low=0, high=1, hint="it is the weight of the KD term")
    require_number(temperature, "Distillation.temperature", above=0)
    require(scaling in SCALINGS, f"Distillation.scaling must be one of {sorted(SCALINGS)}, got {scaling!r}")


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float = 1.0,
                      scaling: str = "t_squared") -> torch.Tensor:
    """Mean cross-entropy of softmax(student / T) against softmax(teacher / T), times the scaling.

    Cross-entropy rather than KL (as in Reflect): the two differ by the teacher's entropy, a
    constant, so gradients are the same; the minimum over student logits is at the teacher's
    own logits (up to a constant shift), where the loss equals the teacher's entropy.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(f"the teacher's logits {tuple(teacher_logits.shape)} do not match the student's "
                          f"{tuple(student_logits.shape)}: teacher and student must share the task's classes")
    targets = torch.softmax(teacher_logits.detach().float() / temperature, dim=-1)
    log_probs = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    cross_entropy = -(targets * log_probs).sum(dim=-1).mean()
    return cross_entropy * SCALINGS[scaling](float(temperature))


@gin.configurable
class Distillation(Task):
    """Wraps `task`; trains the model given to `loss` (the student) towards a frozen `teacher`.

    `teacher_dropout` runs the teacher in training mode (dropout on) while the student trains,
    as Reflect's offline distillation does. Evaluation reports the wrapped task's metrics, the
    share of predictions on which student and teacher agree, and linear CKA between their
    layers over `compare_batches` batches of each split.
    """

    def __init__(self, *, task: Task, teacher: torch.nn.Module | None = None, alpha: float = 1.0,
                 temperature: float = 1.0, scaling: str = "t_squared", teacher_dropout: bool = False,
                 compare_batches: int = 8) -> None:
        check_distillation(alpha, temperature, scaling)
        require(isinstance(task, Task), f"Distillation.task must be a Task, got {type(task).__name__}")
        require_int(compare_batches, "Distillation.compare_batches", low=0)
        self.task = task
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.scaling = scaling
        self.teacher_dropout = bool(teacher_dropout)
        self.compare_batches = compare_batches
        self.eval_batches = task.eval_batches
        self.teacher: torch.nn.Module | None = None
        if teacher is not None:
            self.use_teacher(teacher)

    def use_teacher(self, teacher: torch.nn.Module) -> None:
        """Freeze `teacher` and distil from it (the program sets it once the teacher exists)."""
        require(isinstance(teacher, torch.nn.Module), f"the teacher must be an nn.Module, got {type(teacher).__name__}")
        self.teacher = frozen(teacher)

    def _teacher_on(self, device: torch.device) -> torch.nn.Module:
        if self.teacher is None:
            raise ConfigError("Distillation has no teacher: run it through the `distill` program "
                              "(run.program = @distill) or pass teacher=")
        return follow(self.teacher, device)

    # --- data: the wrapped task's -----------------------------------------------------------
    def batches(self, split, shard):
        return self.task.batches(split, shard)

    def tokens(self, batch):
        return self.task.tokens(batch)

    def example_batch(self, batch_size: int = 1):
        return self.task.example_batch(batch_size)

    # --- objective ------------------------------------------------------------------------
    def teacher_logits(self, batch) -> torch.Tensor:
        """The frozen teacher's logits on `batch`, through the wrapped task's own forward."""
        teacher = self._teacher_on(next(v.device for v in batch.values() if isinstance(v, torch.Tensor)))
        teacher.train(self.teacher_dropout)
        recorder = CallRecorder(teacher)
        with torch.no_grad():
            try:
                self.task.loss(recorder, batch)
            except (RuntimeError, IndexError, ValueError) as error:
                if isinstance(error, ConfigError):
                    raise
                first = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise ConfigError(f"the teacher ({type(teacher).__name__}) cannot run on the task's batches: "
                                  f"{first}") from error
        return logits_of(recorder.only_call("Distillation").output).detach()

    def loss(self, model, batch):
        recorder = CallRecorder(model)
        gold, metrics = self.task.loss(recorder, batch)
        if self.alpha == 0.0:  # plain training of the wrapped task; the teacher is not run
            return gold, {**metrics, "gold_loss": gold.detach()}
        output = recorder.only_call("Distillation").output
        student = logits_of(output)
        teacher = self.teacher_logits(batch)
        kd = distillation_loss(student, teacher, temperature=self.temperature, scaling=self.scaling)
        # The model's own auxiliary loss (ACT, MoE balance) sits inside the gold loss; keep its
        # full weight whatever alpha is, so only the task signal is traded for the teacher's.
        aux = aux_loss_of(output)
        aux = aux if aux is not None else torch.zeros((), device=gold.device)
        total = (1.0 - self.alpha) * gold + self.alpha * (kd + aux)
        metrics = {**metrics, "gold_loss": gold.detach(), "kd_loss": kd.detach(),
                   "teacher_agreement": (student.argmax(-1) == teacher.argmax(-1)).float().mean()}
        return total, metrics

    # --- evaluation ---------------------------------------------------------------------
    def evaluate(self, model, split: str, shard: Shard) -> dict[str, Any]:
        metrics = dict(self.task.evaluate(model, split, shard))
        if self.compare_batches and self.teacher is not None:
            teacher = self._teacher_on(device_of(model)).eval()
            metrics.update(similarity.compare_models(model, teacher, self.task, split, shard, self.compare_batches))
        return metrics

    def summarize(self, split, metrics):
        out = dict(self.task.summarize(split, metrics))
        found = similarity.cka_matrix(metrics)
        if found is not None:
            out["cka_student_vs_teacher"] = summaries.Figure(similarity.cka_figure(*found))
        return out
