"""GIFT under the study protocol (docs/studies.md): target accuracy of every adaptation method on
four shifts, tuned on a labelled target validation split, judged on the target test set.

    python launch/reproduce.py gift --budget cpu --jobs 2            # the committed results
    python launch/reproduce.py gift --budget smoke --shifts moons    # seconds: the whole pipeline
    python launch/reproduce.py gift --budget gpu --jobs 16           # one GPU machine
    python launch/reproduce.py gift --budget cpu --executor slurm --slurm-partition P   # a job array

Each shift is one study (results/gift/<shift>/<budget>.json and .md). Arms: source only, one-round
and five-round self-training, gradual self-training through the real intermediate domains, GIFT with
pair labels and with the teacher labels of the public code, a class-balanced self-training control
(GIFT's class-matched pairing with lambda = 1: no interpolation) and the target oracle. Every
adaptation method trains its own source stage from the same seed and source learning rate, so the
arms of one seed start from the same model (the smoke test checks it) without sharing a folder.
"""
from __future__ import annotations

import argparse
import functools
import inspect
import shlex
from typing import Any

from launch import study as protocol
from launch.study import Arm, Budget, Claim, Study

TUNED = ("AdamW.lr",)
ARMS = (
    Arm("source", "source only", ("gin/gift/source_only.gin",),
        declared={"steps": "no adaptation: the model every method starts from",
                  "unlabelled data": "none: no adaptation"}),
    Arm("st1", "self-training, 1 round", ("gin/gift/self_training.gin",), tune=TUNED),
    Arm("st5", "self-training, 5 rounds", ("gin/gift/iterative_self_training.gin",), tune=TUNED),
    Arm("gradual", "gradual self-training (real intermediates)", ("gin/gift/gradual_self_training.gin",), tune=TUNED,
        declared={"unlabelled data": "the real intermediate domains, which GIFT's setting lacks (an oracle path)"}),
    Arm("gift", "GIFT (pair labels)", ("gin/gift/gift.gin",), tune=TUNED),
    Arm("gift_teacher", "GIFT (teacher labels, official code)", ("gin/gift/gift_teacher_labels.gin",), tune=TUNED),
    Arm("balanced", "class-balanced self-training (pairing, no interpolation)",
        ("gin/gift/class_balanced_self_training.gin",), tune=TUNED),
    Arm("oracle", "target oracle (target labels)", ("gin/gift/target_oracle.gin",), tune=TUNED,
        declared={"steps": "the source model's steps, on the target", "labelled data": "the target's own labels",
                  "unlabelled data": "none: an upper bound, not an adaptation method"}),
)
CLAIMS = (
    Claim("gift_beats_self_training", "GIFT (pair labels) beats 5-round self-training", "gift", "st5"),
    Claim("teacher_gift_beats_self_training", "GIFT (teacher labels, official code) beats 5-round self-training",
          "gift_teacher", "st5"),
    Claim("interpolation_matters", "GIFT beats class-balanced self-training (interpolation, not pairing)",
          "gift", "balanced"),
    Claim("pairing_matters", "class-balanced self-training beats 5-round self-training (pairing alone)",
          "balanced", "st5"),
    Claim("pair_labels_beat_teacher_labels", "GIFT's pair labels beat the official code's teacher labels",
          "gift", "gift_teacher"),
)
# Every run: the plain runs (source only, oracle) also evaluate the validation split, and the
# adaptation programs' source stage keeps the source learning rate whatever the sweep binds, so
# it is the source-only model of the same seed.
COMMON = ("train.eval_splits = ['source', 'target', 'target_validation']", "source/AdamW.lr = 1e-3")
SHIFTS = {  # name: (overlay gin files, description, domain class, cpu-budget data bindings)
    "digits": ((), "digits rotated 0-5 deg -> 30-35 deg, MLP", "RotatedDigits",
               ("RotatedDigits.validation_size = 180",)),
    "digits60": (("gin/gift/digits_60.gin",), "digits rotated 0-5 deg -> 55-60 deg, MLP", "RotatedDigits",
                 ("RotatedDigits.validation_size = 180",)),
    "moons": (("gin/gift/moons.gin",), "two-moons rotated 0-5 deg -> 50-55 deg, MLP", "RotatedMoons",
              ("RotatedMoons.test_size = 2000", "RotatedMoons.validation_size = 1000")),
    "shapes": (("gin/gift/shapes.gin",), "shapes: smaller, blurred, recoloured; SmallCNN", "ShiftedShapes",
               ("ShiftedShapes.test_size = 1500", "ShiftedShapes.validation_size = 600")),
}
# The smoke budget: tiny data and models, 5 rounds of 6 steps (every method's adaptation budget is
# 30 steps, as at full size it is 5 x ROUND_STEPS), two learning rates tuned on one seed.
SMOKE_STEPS = ("SOURCE_STEPS = 60", "ROUND_STEPS = 6", "ALL_ROUNDS_STEPS = 30", "train.batch_size = 32",
               "train.eval_every = 1000", "train.log_every = 1000", "train.checkpoint_every = 1000",
               "WarmupCosine.warmup_steps = 2")
SMOKE_DATA = {
    "RotatedDigits": ("RotatedDigits.image_size = 8", "MLP.input_dim = 64", "MLP.hidden = (16, 8)",
                      "RotatedDigits.pool_size = 100", "RotatedDigits.intermediate_pool_size = 20",
                      "RotatedDigits.validation_size = 100"),
    "RotatedMoons": ("MLP.hidden = (16, 16)", "RotatedMoons.pool_size = 128", "RotatedMoons.intermediate_pool_size = 32",
                     "RotatedMoons.test_size = 200", "RotatedMoons.validation_size = 200"),
    "ShiftedShapes": ("SmallCNN.widths = (4, 8, 8)", "ShiftedShapes.image_size = 8", "ShiftedShapes.pool_size = 64",
                      "ShiftedShapes.intermediate_pool_size = 16", "ShiftedShapes.test_size = 64",
                      "ShiftedShapes.validation_size = 64"),
}
LEARNING_RATES = ("3e-4", "1e-3", "3e-3")


def budgets(shift: str) -> dict[str, Budget]:
    _, _, family, data = SHIFTS[shift]
    return {
        "smoke": Budget("smoke", seeds=(0, 1), bindings=SMOKE_STEPS + SMOKE_DATA[family],
                        sweep={"AdamW.lr": ("3e-3", "1e-2")}, tune_seeds=1, note="tiny shapes: tests the pipeline"),
        "cpu": Budget("cpu", seeds=tuple(range(10)), bindings=data, sweep={"AdamW.lr": LEARNING_RATES}, tune_seeds=3,
                      note="the gin files' steps: the committed results, on a 2-core CPU"),
        "gpu": Budget("gpu", seeds=tuple(range(20)), bindings=data, sweep={"AdamW.lr": LEARNING_RATES}, tune_seeds=5,
                      note="the cpu budget's runs over 20 seeds, for one GPU machine with --jobs 16"),
    }


def _program() -> str:
    import gin
    try:
        return gin.query_parameter("run.program").configurable.name
    except ValueError:
        return "train"


def _bound(program: str, parameter: str) -> Any:
    """A program's parameter as bound, else its default."""
    import gin

    import programs.adaptation
    bindings = gin.get_bindings(program, resolve_references=False)  # resolving would build `domains`
    if parameter in bindings:
        return bindings[parameter]
    return inspect.signature(getattr(programs.adaptation, program)).parameters[parameter].default


@functools.lru_cache(maxsize=16)
def _sizes(family: str, bindings: str) -> dict[str, Any]:
    """Pool and split sizes of one domain configuration (built once per configuration)."""
    from engine import config
    domains = config.built("train.task")
    return {"pools": {d: len(p["label"]) for d, p in domains.pools.items()},
            "intermediates": domains.intermediate_domains, "train_domain": domains.train_domain,
            "test": len(domains.splits["target"]["label"]),
            "validation": len(domains.splits.get("target_validation", {"label": []})["label"])}


def measure() -> dict[str, Any]:
    """The budget of one GIFT-family run, read from its parsed configuration: optimizer steps
    (source stage plus every round), batch, which pools it learns from, and the evaluation sizes."""
    import gin

    from engine.program import configured_steps
    family = gin.query_parameter("DOMAINS/macro.value").configurable.name
    sizes = _sizes(family, repr(sorted(gin.get_bindings(family).items())))
    pools = sizes["pools"]
    program = _program()
    if program == "train":
        domain = sizes["train_domain"]
        steps, labelled, unlabelled = configured_steps(), f"{domain} {pools[domain]}", "none"
    else:
        if program == "gradual_self_training":
            repeats = _bound(program, "rounds_per_domain")
            stages = [d for d in [*sizes["intermediates"], "target"] for _ in range(repeats)]
        else:
            stages = ["target"] * _bound(program, "rounds")
        steps = configured_steps("source") + sum(configured_steps(f"round_{k}") for k in range(1, len(stages) + 1))
        labelled = f"source {pools['source']}"
        unlabelled = " + ".join(f"{d} {pools[d]}" for d in dict.fromkeys(stages))
    return {"steps": steps, "batch": gin.query_parameter("train.batch_size"), "labelled data": labelled,
            "unlabelled data": unlabelled, protocol.REPORT_EXAMPLES: sizes["test"],
            "validation examples": sizes["validation"]}


def extract(result: Any) -> dict[str, Any]:
    """The final metrics, plus every stage's target and validation accuracy for a program."""
    out = protocol.final_metrics(result)
    rounds = getattr(result, "rounds", None)
    if rounds is not None:
        out["extra"] = {"stages": [r.stage for r in rounds],
                        **{split: [r.accuracy[split] for r in rounds] for split in ("target", "target_validation")
                           if all(split in r.accuracy for r in rounds)}}
    return out


def study(shift: str) -> Study:
    files, description, _, _ = SHIFTS[shift]
    return Study(
        name=f"gift/{shift}", title=f"GIFT, {description}: target accuracy", arms=ARMS, budgets=budgets(shift),
        claims=CLAIMS, metric="accuracy", select_split="target_validation", report_split="target",
        files=tuple(files), bindings=COMMON, measure=measure, extract=extract, proportion=True, scale=100, unit="%",
        notes=(f"Shift: {description}. Selection reads labelled target validation examples disjoint from the "
               "target test set (a small labelled target set, as model selection in domain adaptation needs); "
               "the source stage is never tuned.",))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shifts", default=",".join(SHIFTS), help=f"comma-separated, from {','.join(SHIFTS)}")
    protocol.add_arguments(parser)
    args = parser.parse_args(argv)
    shifts = args.shifts.split(",")
    unknown = [s for s in shifts if s not in SHIFTS]
    if unknown:
        parser.error(f"unknown shift(s) {unknown}; choose from {list(SHIFTS)}")
    command = shlex.join(["python", "launch/reproduce.py", "gift", *argv])
    return protocol.main([study(s) for s in shifts], args, command)
