"""Transferring inductive biases through knowledge distillation (Abnar et al. 2020) under the study
protocol (docs/studies.md): does an MLP distilled from a CNN inherit the CNN's robustness to
translation, on a test bed where it could?

    python launch/reproduce.py kd --budget cpu --jobs 1 --threads 1   # the committed results (results/kd/digits/cpu.json)
    python launch/reproduce.py kd --budget smoke --threads 1          # seconds: the whole pipeline
    python launch/reproduce.py kd --budget gpu --jobs 16              # one GPU machine

The bed (gin/kd/digits_covered.gin): training digits on a lattice of offsets that inks the whole
canvas, test and validation digits at the offsets training never uses. Arms: the MLP alone, MLP <-
MLP, MLP <- CNN and the CNN alone (the reference: the bias to transfer). Each distilled run trains
its own teacher (programs/distill.py) with the next seed and the fixed teacher learning rate, so
the teacher of MLP <- CNN at seed s is the CNN arm's run at seed s + 1 (the smoke test checks it);
every MLP arm gets the same learning-rate sweep on the shifted validation digits. The
subject-verb agreement half of the paper is not a study here (docs/kd.md says why).
"""
from __future__ import annotations

import argparse
import functools
import os
import shlex
from typing import Any

from launch import study as protocol
from launch.study import Arm, Budget, Claim, Study

BED = "gin/kd/digits_covered.gin"
TEACHER_LR = "3e-3"  # kd_digits.gin's rate: every teacher and the (untuned) CNN reference use it
TUNED = ("AdamW.lr",)
TEACHER = {"teacher steps": "the teacher, trained inside the run before the student",
           "teacher": "the model whose outputs the student learns from"}
ARMS = (
    Arm("mlp", "MLP alone", ("gin/kd/kd_mlp.gin",), tune=TUNED),
    Arm("mlp_from_mlp", "MLP <- MLP", ("gin/kd/kd_mlp_from_mlp.gin",), tune=TUNED, declared=TEACHER),
    Arm("mlp_from_cnn", "MLP <- CNN", ("gin/kd/kd_mlp_from_cnn.gin",), tune=TUNED, declared=TEACHER),
    Arm("cnn", "CNN alone (the teacher's bias)", ("gin/kd/kd_cnn.gin",),
        declared={"model": "the CNN whose bias is to be transferred: a reference, in no claim"}),
)
CLAIMS = (
    Claim("cnn_teacher_beats_mlp_teacher", "MLP <- CNN beats MLP <- MLP on shifted digits", "mlp_from_cnn",
          "mlp_from_mlp"),
    Claim("cnn_teacher_beats_no_teacher", "MLP <- CNN beats the MLP alone on shifted digits", "mlp_from_cnn", "mlp"),
)
# Every run: the teacher's seed is the student's plus one and its learning rate stays fixed
# whatever the sweep binds, so it is the CNN (or MLP) trained alone from that seed.
COMMON = ("distill.teacher_seed_offset = 1", f"teacher/AdamW.lr = {TEACHER_LR}")


def steps(count: int) -> tuple[str, ...]:
    """Bindings for `count` steps per stage, evaluated (and checkpointed) once, at the end."""
    return (f"train.steps = {count}", f"train.eval_every = {count}", f"train.checkpoint_every = {count}",
            f"train.log_every = {max(1, count // 4)}")


SMOKE = (*steps(30), "train.batch_size = 32", "WarmupCosine.warmup_steps = 2", "DigitsOnCanvas.canvas = 12",
         "DigitsOnCanvas.train_shift = 2", "DigitsOnCanvas.max_shift = 2", "DigitsOnCanvas.scale_range = (1.0, 1.2)",
         "DigitsOnCanvas.translated_copies = 1", "DigitsOnCanvas.validation_size = 100", "MLP.input_dim = 144",
         "MLP.hidden = (16,)", "SmallCNN.widths = (4, 8)", "Distillation.compare_batches = 1")
LEARNING_RATES = ("1e-3", "3e-3", "1e-2")  # kd_digits.gin's 3e-3 and a factor of ~3 either side
BUDGETS = {
    "smoke": Budget("smoke", seeds=(0, 1), bindings=SMOKE, sweep={"AdamW.lr": ("3e-3", "1e-2")}, tune_seeds=1,
                    note="a 12x12 canvas, tiny models, 30 steps: tests the pipeline"),
    "cpu": Budget("cpu", seeds=tuple(range(10)), bindings=steps(2000), sweep={"AdamW.lr": LEARNING_RATES},
                  tune_seeds=2, note="2,000 steps of batch 64 per stage; about 17 CPU-minutes on one core"),
    "gpu": Budget("gpu", seeds=tuple(range(20)), bindings=steps(4000),
                  sweep={"AdamW.lr": LEARNING_RATES}, tune_seeds=3,
                  note="4,000 steps per stage, 20 seeds, a 3-point sweep: one GPU machine with --jobs 16"),
}


def _program() -> str:
    import gin
    return gin.query_parameter("run.program").configurable.name


def _model(scope: str | None = None) -> str:
    """The configurable a model binding names: train.model in `scope`, or the teacher."""
    import gin
    if scope == "teacher":
        return gin.query_parameter("distill.teacher").configurable.name
    return gin.query_parameter("train.model").configurable.name


@functools.lru_cache(maxsize=8)
def _bed(bindings: str) -> dict[str, Any]:
    """The task's split sizes and ink coverage for one DigitsOnCanvas configuration (built once)."""
    from engine import config
    from tasks.images.digits_canvas import VALIDATION, ink_outside_training
    task = config.built("train.task")
    return {"training offsets": len(task.training_offsets()), "test offsets": len(task.unseen_offsets()),
            protocol.REPORT_EXAMPLES: len(task.arrays("translated")["label"]),
            "validation examples": len(task.arrays(VALIDATION)["label"]),
            "coverage": ink_outside_training(task), "validation coverage": ink_outside_training(task, VALIDATION)}


def bed() -> dict[str, Any]:
    """`_bed` of the configuration parsed now."""
    import gin
    return _bed(repr(sorted(gin.get_bindings("DigitsOnCanvas").items())))


def measure() -> dict[str, Any]:
    """One run's budget from its parsed configuration: the student's steps and batch, the teacher
    (and its steps) a distilled run trains first, the model, and the evaluation sizes."""
    import gin

    from engine.program import configured_steps
    distilled = _program() == "distill"
    sizes = bed()
    return {"steps": configured_steps("student" if distilled else None),
            "batch": gin.query_parameter("train.batch_size"),
            "model": _model(),
            "teacher": _model("teacher") if distilled else "none",
            "teacher steps": configured_steps("teacher") if distilled else 0,
            "training offsets": sizes["training offsets"], "test offsets": sizes["test offsets"],
            protocol.REPORT_EXAMPLES: sizes[protocol.REPORT_EXAMPLES],
            "validation examples": sizes["validation examples"],
            "test ink outside training ink": round(sizes["coverage"]["ink_outside"], 6)}


def extract(result: Any) -> dict[str, Any]:
    """The student's final metrics, plus its teacher's on the same splits (read from the teacher
    stage's log: the teacher of a distilled run is part of what the run trained)."""
    from engine.logging import read_metrics
    out = protocol.final_metrics(result)
    workdir = os.path.normpath(result.workdir)
    teacher = os.path.join(os.path.dirname(workdir), "teacher")
    if os.path.basename(workdir) == "student" and os.path.isdir(teacher):
        splits = {key.split("/")[0] for key in out["metrics"]}
        logged = [r for r in read_metrics(teacher) if r.get("split") in splits]
        last = max(r["step"] for r in logged)
        out["extra"] = {"teacher": {f"{r['split']}/{k}": float(v) for r in logged if r["step"] == last
                                    for k, v in r.items() if k not in ("step", "split") and isinstance(v, (int, float))}}
    return out


def coverage_note(budget: str) -> str:
    """The bed at `budget`, measured from its configuration (the MLP arm's files and bindings)."""
    from launch.experiment import parsed_config
    from engine import config
    from tasks.images.digits_canvas import ink_outside_training
    with parsed_config([*ARMS[0].gin, BED], [*COMMON, *BUDGETS[budget].bindings]):
        sizes = bed()
    with parsed_config(ARMS[0].gin, []):  # the bed before this one: gin/kd/kd_digits.gin alone
        old = ink_outside_training(config.built("train.task"))
    test, validation = sizes["coverage"], sizes["validation coverage"]
    return (f"Coverage at this budget: {sizes['training offsets']} training offsets, {sizes['test offsets']} unseen "
            f"test offsets; the training digits (at every training offset) ink {test['inked_pixels']} of the "
            f"{test['canvas_pixels']} canvas pixels, and {test['images_outside']:.2%} of the shifted test images "
            f"({validation['images_outside']:.2%} of the validation images) put any ink outside them, "
            f"{test['ink_outside']:.4%} of their ink on average (`ink_outside_training`, "
            f"tasks/images/digits_canvas.py). The old bed (gin/kd/kd_digits.gin: +-1 px training jitter, tests "
            f"up to +-4 px) inks {old['inked_pixels']} pixels, and {old['images_outside']:.0%} of its translated "
            f"test digits put ink outside them ({old['ink_outside']:.0%} of their ink).")


def study(budget: str | None = None) -> Study:
    """The digits study; with `budget`, its notes state that budget's measured coverage."""
    notes = ["Bed (gin/kd/digits_covered.gin): scikit-learn digits on a canvas. Training digits sit at offsets "
             "that are multiples of 2 px from the centre (up to 4 px at the cpu and gpu budgets); the shifted test "
             "and validation digits sit at the offsets within the same range that training never uses (at least "
             "one odd coordinate). Selection reads shifted validation digits held out of the test digits; the test "
             "split is read once. Distillation: T = 5, alpha = 1 (the teacher's outputs on the training images "
             "only), 1/T^2 scaling, as in Reflect's MNIST runs. The CNN is untuned, at the teachers' learning "
             "rate, so its run at seed s + 1 is the teacher of MLP <- CNN at seed s."]
    if budget is not None:
        notes.append(coverage_note(budget))
    return Study(
        name="kd/digits", title="Inductive-bias distillation, digits at unseen offsets: shifted test accuracy",
        arms=ARMS, budgets=BUDGETS, claims=CLAIMS, metric="accuracy", select_split="translated_validation",
        report_split="translated", files=(BED,), bindings=COMMON, measure=measure, extract=extract,
        proportion=True, scale=100, unit="%", notes=tuple(notes))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    protocol.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.budget not in BUDGETS:
        parser.error(f"unknown budget {args.budget!r}; choose from {list(BUDGETS)}")
    command = shlex.join(["python", "launch/reproduce.py", "kd", *argv])
    return protocol.main([study(args.budget)], args, command)
