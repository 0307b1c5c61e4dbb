"""AAPE under the study protocol (docs/studies.md): few-shot base-to-new prompt learning on a frozen
mini-CLIP that never saw the new classes; the harmonic mean of base and new accuracy, tuned on
base-class validation only, judged on the fixed test images.

    python launch/reproduce.py aape --budget cpu --jobs 1 --threads 1   # the committed results
    python launch/reproduce.py aape --budget smoke --shots 4            # seconds: the whole pipeline
    python launch/reproduce.py aape --budget gpu --jobs 16              # one GPU machine

First the backbone, like a downloaded CLIP: the mini-CLIP is pre-trained once per budget
(gin/aape/clip_pretrain.gin, its own fixed seed) with the new classes of the base/new split held
out (no image of them, no caption naming them; their colour and shape words appear with the base
classes), in this process, then exported to safetensors next to a record of its configuration
hash. Every run of every arm loads that file. A backbone folder made by another configuration is
refused, never reused. Then one study per shot count (results/aape/<k>_shots/<budget>.json and
.md): zero-shot CLIP, CoOp, CoCoOp and AAPE, the three learners tuned over the same learning rates.
The seed sets the few-shot draw and the prompts' initialisation, the same for every arm.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import shlex
import sys
import time
from typing import Any

from launch import study as protocol
from launch.study import Arm, Budget, Claim, Study, StudyError

TUNED = ("AdamW.lr",)
ARMS = (
    Arm("zeroshot", "zero-shot CLIP (hand-written prompt)", ("gin/aape/zeroshot.gin",),
        declared={"steps": "nothing to learn: its one parameter, a temperature, cannot change a prediction"}),
    Arm("coop", "CoOp", ("gin/aape/coop.gin",), tune=TUNED),
    Arm("cocoop", "CoCoOp", ("gin/aape/cocoop.gin",), tune=TUNED),
    Arm("aape", "AAPE", ("gin/aape/aape.gin",), tune=TUNED),
)
ZERO_SHOT_FAIR = ("zero-shot has nothing to tune (a temperature cannot change a prediction: "
                  "tests/models/test_prompting.py::test_zero_shot_training_cannot_change_a_prediction), so every "
                  "learning rate gives it the same accuracy; AAPE's is selected on base-class validation images, "
                  "which show no new class")
CLAIMS = (
    Claim("aape_beats_coop", "AAPE beats CoOp on the harmonic mean", "aape", "coop"),
    Claim("aape_beats_cocoop", "AAPE beats CoCoOp on the harmonic mean", "aape", "cocoop"),
    Claim("aape_beats_zeroshot_on_new", "AAPE beats zero-shot CLIP on new-class accuracy", "aape", "zeroshot",
          metric="new_accuracy", tuning_note=ZERO_SHOT_FAIR),
)
SHOTS = (16, 4)
LEARNING_RATES = ("5e-4", "2e-3", "8e-3")  # a factor 4 around the gin files' 2e-3, fixed before any run
# Every prompt run: the report split, the selection split (base classes only; `new_validation` is
# never evaluated, so no run reads a new-class validation label) and the frozen backbone's retrieval.
COMMON = ("train.eval_splits = ['base_to_new', 'base_validation', 'retrieval']",)
SEED_BINDINGS = ("FewShotBaseToNew.shots_seed = {seed}",)
BACKBONE_SEED = 0
PRETRAIN_FILES = ("gin/aape/clip_pretrain.gin",)
# The architecture, shared by pre-training and every prompt run of a budget (the weights must fit).
TOWERS = {
    "smoke": ("IMAGE_SIZE = 12", "ViT.patch_size = 6", "ViT.d_model = 16", "ViT.num_layers = 1", "ViT.num_heads = 2",
              "TextTransformer.d_model = 16", "TextTransformer.num_layers = 1", "TextTransformer.num_heads = 2",
              "EMBED_DIM = 16"),
    "cpu": (),
    "gpu": (),
}
PRETRAIN = {  # the backbone's own budget (gin/aape/clip_pretrain.gin: 1000 steps of 128 pairs)
    "smoke": ("train.steps = 20", "train.batch_size = 32", "train.eval_every = 20", "train.checkpoint_every = 20",
              "WarmupCosine.warmup_steps = 2", "ImageTextPairs.digit_fraction = 0.0", "ImageTextPairs.eval_pairs = 16",
              "ImageTextPairs.eval_per_class = 1"),
    "cpu": (),
    "gpu": (),
}
SMOKE_PROMPTS = ("train.steps = 3", "train.eval_every = 3", "train.checkpoint_every = 3", "train.batch_size = 8",
                 "WarmupCosine.warmup_steps = 1", "FewShotBaseToNew.eval_per_class = 2",
                 "FewShotBaseToNew.validation_per_class = 2", "FewShotBaseToNew.retrieval_pairs = 8",
                 "AAPE.generator_hidden = 8", "AAPE.aggregator_heads = 2")
BUDGETS = {
    "smoke": Budget("smoke", seeds=(0, 1), bindings=TOWERS["smoke"] + SMOKE_PROMPTS,
                    sweep={"AdamW.lr": ("2e-3", "8e-3")}, tune_seeds=1, note="tiny towers: tests the pipeline"),
    "cpu": Budget("cpu", seeds=tuple(range(10)), sweep={"AdamW.lr": LEARNING_RATES}, tune_seeds=2,
                  note="the gin files' sizes: 100 steps of 32 images per prompt run, on a 2-core CPU"),
    "gpu": Budget("gpu", seeds=tuple(range(20)), sweep={"AdamW.lr": LEARNING_RATES}, tune_seeds=5,
                  note="the cpu budget's runs over 20 seeds, sweep on 5, for one GPU machine with --jobs 16"),
}


# --- the backbone ------------------------------------------------------------------------------

def pretrain_configuration(budget: str) -> tuple[list[str], list[str]]:
    """The gin files and bindings of the backbone at `budget` (its seed fixed, whatever the arms')."""
    return list(PRETRAIN_FILES), [*TOWERS[budget], *PRETRAIN[budget], f"train.seed = {BACKBONE_SEED}"]


def _sha256(path: str) -> str:
    from engine.checkpoint import _digest  # the engine's own file digest (checkpoint manifests)
    return _digest(path)["sha256"]


def backbone(root: str, budget: str, command: str, log=print) -> dict[str, Any]:
    """Pre-train the mini-CLIP of `budget` once and export it, or reuse the export made by the same
    configuration; StudyError for a folder whose backbone came from another configuration or whose
    export changed since. Returns its record (path, config hash, held-out classes, metrics, time)."""
    from engine import checkpoint, config, program
    from engine.files import write_atomically
    from launch import provenance
    from launch.experiment import parsed_config
    from tasks.prompting.shape_language import base_new_split, class_name
    files, bindings = pretrain_configuration(budget)
    hashed = protocol.config_hash(files, bindings)
    folder = os.path.join(root, "aape", "backbone", budget)
    record_path = os.path.join(folder, "backbone.json")
    if os.path.exists(record_path):
        with open(record_path) as handle:
            record = json.load(handle)
        if record["config_hash"] != hashed:
            raise StudyError(f"{folder} holds a backbone pre-trained by another configuration (hash "
                             f"{record['config_hash']}, expected {hashed}): delete that folder or pass another --workdir")
        if not os.path.exists(record["path"]) or _sha256(record["path"]) != record["sha256"]:
            raise StudyError(f"the backbone {record['path']} is missing or changed since it was exported: delete "
                             f"{folder} to pre-train it again")
        log(f"backbone: reusing {protocol.shown(record['path'])} (config {hashed})")
        return record
    workdir = os.path.join(folder, "pretrain")
    os.makedirs(workdir, exist_ok=True)
    log(f"backbone: pre-training the mini-CLIP in {protocol.shown(workdir)} (config {hashed})")
    began, cpu = time.time(), time.process_time()
    with open(os.path.join(workdir, "log.txt"), "a") as out, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(out), parsed_config(files, bindings):
        held_out_split = config.built("ImageTextPairs.held_out_split")
        result = program.main(workdir)
    wall, cpu = time.time() - began, time.process_time() - cpu
    if not result.finished:
        raise protocol.Interrupted(f"{workdir} stopped before its last step; run the same command again to resume it")
    export = os.path.join(folder, f"clip_{hashed}.safetensors")
    checkpoint.export_safetensors(result.checkpoint, export)
    held_out = [] if held_out_split is None else [class_name(*k) for k in base_new_split(held_out_split)[1]]
    record = {"path": export, "config_hash": hashed, "sha256": _sha256(export), "seed": BACKBONE_SEED,
              "held_out_split": held_out_split, "held_out": held_out,
              "metrics": {k: float(v) for k, v in result.metrics["eval"].items()}, "cpu_s": round(cpu, 1),
              "provenance": provenance.collect(command=command, run_command=protocol.run_command(files, bindings, workdir),
                                               config_hash=hashed, wall_s=wall, resumed=False)}
    write_atomically(record_path, json.dumps(record, indent=1))
    return record


def check_unseen(study: Study, budget: str, record: dict[str, Any]) -> None:
    """Every arm's new classes are the classes the backbone held out (StudyError otherwise): a
    mismatched split would test "new" classes the backbone was pre-trained on."""
    from launch.experiment import parsed_config
    for arm in study.arms:
        with parsed_config([*arm.gin, *study.files], [*study.bindings, *arm.bindings, *study.budgets[budget].bindings]):
            split = _task_parameter("split_seed")
        if record["held_out_split"] is None or split != record["held_out_split"]:
            raise StudyError(f"arm {arm.name!r} uses base/new split {split}, but the backbone held out the new "
                             f"classes of split {record['held_out_split']}: its new classes would not be unseen")


# --- one run's budget and metrics ----------------------------------------------------------------

def _task_parameter(name: str) -> Any:
    """A FewShotBaseToNew parameter as bound in the parsed configuration (macros resolved), else
    its default: read without building the task."""
    from engine import config
    from tasks.prompting.prompt_learning import FewShotBaseToNew
    try:
        return config.built(f"FewShotBaseToNew.{name}")
    except ValueError:
        return inspect.signature(FewShotBaseToNew.__init__).parameters[name].default


def measure() -> dict[str, Any]:
    """The budget of one prompt run, read from its parsed configuration: steps, batch, the few-shot
    training set, the backbone file (the same export for every arm) and the evaluation sizes."""
    import gin

    from engine import config
    from engine.program import configured_steps
    from tasks.prompting.shape_language import base_new_split
    split = _task_parameter("split_seed")
    base = len(base_new_split(split)[0])
    return {"steps": configured_steps(), "batch": gin.query_parameter("train.batch_size"),
            "training images": f"{_task_parameter('shots')} per base class x {base}",
            "backbone": os.path.basename(str(config.built("train.init_from"))), "base/new split": split,
            # One half's test images: the harmonic mean's binomial SE is at most that of one half.
            protocol.REPORT_EXAMPLES: base * _task_parameter("eval_per_class"),
            "validation examples": base * _task_parameter("validation_per_class")}


def extract(result: Any) -> dict[str, Any]:
    """The final metrics, plus AAPE's attention on distractor descriptions (last logged step)."""
    from engine.logging import read_metrics
    out = protocol.final_metrics(result)
    train = [r for r in read_metrics(result.workdir) if r.get("split") == "train"]
    if train and "attention/distractor_share" in train[-1]:
        out["extra"] = {name: float(train[-1][f"attention/{name}"])
                        for name in ("distractor_share", "distractor_share_uniform")}
    return out


def study(shots: int, record: dict[str, Any] | None = None) -> Study:
    """The study at `shots` per base class; `record` (the backbone's) points every arm at it."""
    bindings = (*COMMON, f"FewShotBaseToNew.shots = {shots}")
    notes = [
        f"Base-to-new at {shots} shots per base class: 24 base classes to learn prompts on, 24 new classes the "
        "backbone never saw in pre-training (no image of them, no caption naming them; each of their colour and "
        "shape words appears with base classes, so zero-shot on them can only come from composing words). "
        "Report: `base_to_new` (20 fixed test images per class; base accuracy among base classes, new among new, "
        "their harmonic mean). Selection: `base_validation` accuracy (10 other images per base class); "
        "selecting on new-class validation would read new-class labels, so no run evaluates it.",
        "The harmonic mean's binomial SE below uses one half's 480 test images (it is at most that).",
    ]
    if record is not None:
        bindings += (f"BACKBONE = '{record['path']}'",)
        metrics = record["metrics"]
        notes.append(
            f"Backbone: `{protocol.shown(record['path'])}`, pre-training config hash {record['config_hash']}, seed "
            f"{record['seed']}, {len(record['held_out'])} classes held out (split {record['held_out_split']}); "
            f"{record['provenance']['wall_s'] / 60:.1f} min wall, {record['cpu_s'] / 60:.1f} CPU-min, once for every "
            f"arm and shot count. Zero-shot on pre-training-style images: {100 * metrics['seen_zero_shot_accuracy']:.1f}% "
            f"among the 24 seen classes, {100 * metrics['held_out_zero_shot_accuracy']:.1f}% among the 24 held-out ones "
            f"(chance 4.2%). Rerun it alone: `{record['provenance']['run_command']}`.")
    return Study(
        name=f"aape/{shots}_shots", title=f"AAPE, base-to-new at {shots} shots on a mini-CLIP that never saw the new "
                                           "classes: harmonic mean of base and new accuracy",
        arms=ARMS, budgets=BUDGETS, claims=CLAIMS, metric="harmonic_mean", select_split="base_validation",
        select_metric="accuracy", report_split="base_to_new", bindings=bindings, seed_bindings=SEED_BINDINGS,
        measure=measure, extract=extract, proportion=True, scale=100, unit="%",
        columns=(("base (%)", "base_accuracy", 100), ("new (%)", "new_accuracy", 100)), notes=tuple(notes))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", default=",".join(map(str, SHOTS)), help="comma-separated shot counts per base class")
    protocol.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        shots = [int(k) for k in args.shots.split(",")]
    except ValueError:
        parser.error(f"--shots takes comma-separated integers, got {args.shots!r}")
    if args.budget not in BUDGETS:
        parser.error(f"unknown budget {args.budget!r}; choose from {sorted(BUDGETS)}")
    command = shlex.join(["python", "launch/reproduce.py", "aape", *argv])
    root = os.path.abspath(args.workdir)
    try:
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
        record = backbone(root, args.budget, command)
        studies = [study(k, record) for k in shots]
        for each in studies:
            check_unseen(each, args.budget, record)
    except StudyError as error:
        print(f"study: {error}", file=sys.stderr)
        return 1
    return protocol.main(studies, args, command)
