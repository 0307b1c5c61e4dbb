"""Exploring the Limits of Large Scale Pre-training (Abnar et al. 2022) under the study protocol
(docs/studies.md): the arms are upstream configurations (model x size x data fraction x steps x
head weight decay) trained over paired seeds on 384 procedural classes; each run probes every layer
few-shot on five downstream tasks, near and far from upstream.

    python launch/reproduce.py saturation --budget cpu --jobs 1 --threads 1   # the committed results
    python launch/reproduce.py saturation --budget smoke                      # seconds: the pipeline
    python launch/reproduce.py saturation --budget gpu --jobs 16              # one GPU machine

The protocol judges the paired claims (longer training beats shorter upstream and on each task;
the raised head weight decay on each task and on layer 1 minus the last layer). The saturation
analysis (results/saturation/<budget>_analysis.json; launch/reproductions/_saturation_analysis.py)
fits Eq. 1 on each seed's upper hull and says when a fit is degenerate, tests for diminishing
returns along the steps chain over seeds, and compares layer 1 with the last layer; it draws
results/saturation/<budget>_saturation.png and <budget>_layers.png. Nothing is tuned.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
from typing import Any, Sequence

from launch import study as protocol
from launch.benchmarks._record import load_average
from launch.study import Arm, Budget, Claim, Study

# source -> (distance from upstream, classes); the order of every table.
TASKS = {"coarse_shape": ("near", 6), "texture_frequency": ("far", 2), "object_count": ("far", 4),
         "noise_level": ("far", 4), "digits": ("far, other domain", 10)}
SHOTS = 25  # the paper's main text reports 25-shot accuracy; the claims and analysis read it
BASE = "gin/saturation/upstream.gin"
MAIN = "mixer_small"  # the chain's model: the best upstream accuracy per core-second in the old sweep
#: The chain of upstream steps (budget macros); 'long' is every other arm's length unless declared.
SHORT, MID, LONG = "%STEPS_SHORT", "%STEPS_MID", "%STEPS_LONG"


def model(name: str) -> str:
    return f"gin/saturation/model/{name}.gin"


def arm(name: str, label: str, net: str, steps: str = LONG, *, head_wd: bool = False, fraction: float = 1.0,
        declared: dict[str, str] | None = None) -> Arm:
    files = ("gin/saturation/head_wd.gin",) if head_wd else (BASE,)  # head_wd.gin includes the base
    bindings = (f"train.steps = {steps}",) + ((f"ShapesUpstream.data_fraction = {fraction}",) if fraction != 1 else ())
    return Arm(name, label, (*files, model(net)), bindings, declared=declared or {})


CHAIN = "the steps chain: upstream accuracy varied by training length, the paper's compute axis"
ARMS = (
    arm(f"{MAIN}_short", f"{MAIN}, short", MAIN, SHORT, declared={"steps": CHAIN}),
    arm(f"{MAIN}_mid", f"{MAIN}, mid", MAIN, MID, declared={"steps": CHAIN}),
    arm(MAIN, f"{MAIN}, long", MAIN),
    arm(f"{MAIN}_head_wd", f"{MAIN}, long, head wd 3", MAIN, head_wd=True),
    arm(f"{MAIN}_data10", f"{MAIN}, mid, 10% data", MAIN, MID, fraction=0.1,
        declared={"steps": "mid length (22 epochs of the 10% subset at the cpu budget)",
                  "upstream images": "the paper's data-size axis: a nested 10% subset"}),
    arm("mixer_tiny", "mixer_tiny, long", "mixer_tiny"),
    arm("resnet_small", "resnet_small, long", "resnet_small"),
    arm("vit_small", "vit_small, mid", "vit_small", MID,
        declared={"steps": "mid length: ViT-small costs 1.4x Mixer-small per step on the CPU"}),
)
LONG_ARMS = {"mixer_small": MAIN, "mixer_tiny": "mixer_tiny", "resnet_small": "resnet_small", "vit_small": "vit_small"}


def claims() -> tuple[Claim, ...]:
    def fewshot(task: str, suffix: str = "") -> str:
        return f"fewshot/{task}/{SHOTS}shot{suffix}"
    out = [Claim("upstream_improves", f"{MAIN} long beats mid on upstream accuracy", MAIN, f"{MAIN}_mid"),
           Claim("head_wd_costs_upstream", f"{MAIN}: head wd 0.01 beats head wd 3 on upstream accuracy", MAIN,
                 f"{MAIN}_head_wd")]
    out += [Claim(f"downstream_follows_{t}", f"{MAIN} long beats mid on {t} ({SHOTS}-shot)", MAIN, f"{MAIN}_mid",
                  metric=fewshot(t)) for t in TASKS]
    out += [Claim(f"head_wd_helps_{t}", f"{MAIN}: head wd 3 beats 0.01 on {t} ({SHOTS}-shot)", f"{MAIN}_head_wd",
                  MAIN, metric=fewshot(t)) for t in TASKS]
    out += [Claim(f"head_wd_lowers_best_layer_{t}", f"{MAIN}: head wd 3 raises layer 1 minus last layer on {t}",
                  f"{MAIN}_head_wd", MAIN, metric=fewshot(t, "/first_minus_last")) for t in TASKS]
    return tuple(out)


COMMON = ("train.eval_splits = ['eval', 'validation']", "train.log_every = 100",
          # Evaluate only at the last step (eval_every > steps still evaluates there).
          "train.eval_every = 1000000", "train.checkpoint_every = 500", "ShapesUpstream.validation_examples = 1000")
SMOKE = ("IMAGE_SIZE = 8", "ShapesUpstream.num_examples = 256", "ShapesUpstream.eval_examples = 32",
         "ShapesUpstream.validation_examples = 32", "train.batch_size = 16", "WarmupCosine.warmup_steps = 1",
         "MLPMixer.d_model = 16", "ViT.d_model = 16", "ResNetV2.width = 4", "FewShotEvaluator.shots = [25]",
         "FewShotEvaluator.seeds = 1",
         *(f"{source}.{part} = {n}" for source in ("CoarseShapes", "TextureFrequency", "ObjectCount", "NoiseLevel",
                                                   "DigitsFewShot")
           for part, n in (("pool_per_class", 25), ("test_per_class", 4))))


def steps(short: int, mid: int, long: int) -> tuple[str, ...]:
    return (f"STEPS_SHORT = {short}", f"STEPS_MID = {mid}", f"STEPS_LONG = {long}")


BUDGETS = {
    "smoke": Budget("smoke", seeds=(0, 1, 2), bindings=steps(2, 3, 4) + SMOKE, note="tiny shapes: tests the pipeline"),
    # Measured at 1 thread: a Mixer-small step of batch 64 costs ~0.034 core-s, a ResNet-small one ~0.023,
    # a ViT-small one ~0.048; the 40 runs of this budget took 23 CPU-min. 2,000 steps are 6.4 epochs of
    # the 20,000 images and take Mixer-small to ~0.89 upstream accuracy (1,000 steps gave 0.655 in the old sweep).
    "cpu": Budget("cpu", seeds=(0, 1, 2, 3, 4), bindings=steps(250, 700, 2000),
                  note="250 / 700 / 2,000 steps of batch 64, one thread per run, a shared 2-core CPU"),
    "gpu": Budget("gpu", seeds=tuple(range(10)), bindings=steps(750, 2100, 6000),
                  note="3x the steps and 10 seeds, for one GPU machine with --jobs 16"),
}


def measure() -> dict[str, Any]:
    """Steps and batch, the upstream images a run learns from, the report split's size (it sizes the
    binomial SE of upstream accuracy) and the few-shot protocol every run is probed with."""
    import gin
    fraction = gin.query_parameter("ShapesUpstream.data_fraction")
    images = max(1, int(round(fraction * gin.query_parameter("ShapesUpstream.num_examples"))))
    return {**protocol.default_measure(), "upstream images": images,
            protocol.REPORT_EXAMPLES: gin.query_parameter("ShapesUpstream.eval_examples"),
            "validation examples": gin.query_parameter("ShapesUpstream.validation_examples"),
            "few-shot": f"shots {list(gin.query_parameter('FewShotEvaluator.shots'))}, "
                        f"{gin.query_parameter('FewShotEvaluator.seeds')} draws, every layer"}


def extract(result: Any) -> dict[str, Any]:
    """The final metrics, plus `fewshot/<task>/<k>shot/first_minus_last` (layer 1 minus the last
    layer, where a far task's best layer moves), and the model's size and epochs."""
    from engine import config
    out = protocol.final_metrics(result)
    metrics = out["metrics"]
    for key in [k for k in metrics if k.endswith("/layer_1")]:
        last = metrics.get(key[:-len("/layer_1")])
        if last is not None:
            metrics[key[:-len("layer_1")] + "first_minus_last"] = metrics[key] - last
    task = config.built("train.task")
    out["extra"] = {"parameters": sum(p.numel() for p in result.model.parameters()),
                    "layers": len(result.model.stages), "epochs": task.epochs(result.steps, _batch_size())}
    return out


def _batch_size() -> int:
    import gin
    return int(gin.query_parameter("train.batch_size"))


def study() -> Study:
    columns = tuple((f"{task} (%)", f"fewshot/{task}/{SHOTS}shot", 100) for task in TASKS)
    return Study(
        name="saturation", title=f"Upstream vs downstream accuracy: {SHOTS}-shot transfer of upstream configurations",
        arms=ARMS, budgets=BUDGETS, claims=claims(), metric="accuracy", select_split="validation",
        report_split="eval", bindings=COMMON, measure=measure, extract=extract, proportion=True, scale=100,
        unit="%", columns=columns,
        notes=("Upstream: 384 procedural classes (6 shapes x 8 colours x 4 textures x 2 position bins), 16x16 "
               "images, chance 0.26%; `eval` holds 2,000 held-out images, `validation` 1,000 others (nothing is "
               "tuned: every arm runs upstream.gin's AdamW 2e-3, so the validation column only shows that it agrees). "
               f"Downstream columns: {SHOTS}-shot closed-form least-squares probe on the frozen pre-logits, mean of 3 "
               "draws of the shots, test sets of 100 images per class (digits: 46-62); chance 16.7 / 50 / 25 / 25 / "
               "10%. Seeds pair the initialisation and data order; the shot draws are the same for every run.",
               "`first_minus_last`: accuracy probed at layer 1 minus at the last layer (pre-logits), per seed."))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    protocol.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.budget not in BUDGETS:
        parser.error(f"unknown budget {args.budget!r}; choose from {sorted(BUDGETS)}")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    command = shlex.join(["python", "launch/reproduce.py", "saturation", *argv])
    load_start = load_average()
    code = protocol.main([study()], args, command)
    if code == 0:
        report(args.budget, os.path.abspath(args.out), command, load_start)
    return code


def report(budget: str, out: str, command: str, load_start: Sequence[float]) -> str:
    """The fits, returns, held-out and layer tables as a record beside the study's results
    (results/saturation/<budget>_analysis.json), and both figures."""
    from launch.reproductions import _saturation_analysis as analysis
    folder = os.path.join(out, "saturation")
    with open(os.path.join(folder, f"{budget}.json")) as handle:
        results = json.load(handle)
    tables = analysis.analysis_tables(results, tasks=TASKS, shots=SHOTS, chain=(f"{MAIN}_short", f"{MAIN}_mid", MAIN),
                                      layer_arms=(*LONG_ARMS.values(), f"{MAIN}_head_wd"))
    described = sum(1 for row in tables["frontier"]["rows"] if row["degenerate_seeds"] == 0)
    figures = {"tasks": len(TASKS), "shots": SHOTS, "described": described}
    summary = ("Eq. 1 fitted on each seed's upper hull at {shots} shots: a trend (no degenerate fit in any seed) on "
               "{described} of {tasks} downstream tasks.")
    path = protocol.write_analysis(os.path.join(folder, f"{budget}_analysis.json"), f"saturation/{budget}", command, [results],
                          tables, figures, summary, load_start)
    analysis.plots(results, folder, tasks=TASKS, shots=SHOTS)
    return path
