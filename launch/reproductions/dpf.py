"""Diffusion Probabilistic Fields (Zhuang et al. 2023) under the study protocol (docs/studies.md):
does DPF generate fields closer to held-out data than a Gaussian fitted to the training fields?

    python launch/reproduce.py dpf --budget cpu --jobs 1 --threads 1   # results/dpf/sphere/cpu.json
    python launch/reproduce.py dpf --budget smoke --threads 1          # seconds: the whole pipeline
    python launch/reproduce.py dpf --budget gpu --jobs 4               # sphere, images and 3D shapes
    python launch/reproduce.py dpf --budget gpu --print-plan           # every run's budget, nothing trains

One study per domain; arms are methods, all run by one program (programs/field_scores.py) with the
same metric code and the same saved, frozen feature network: DPF (trained, sampled from its EMA
weights), a Gaussian fitted to the training fields (nothing trained) and the oracle (held-out
fields scored as if they were samples: what a perfect generator scores). Each run scores 5 sample
draws on the validation split (which chooses) and on the test split (`eval`, read once for the
table); means, intervals and claims are over (training seed, draw) units. Writes the figure
results/dpf/<domain>/<budget>.png from each arm's seed-0 samples.
"""
from __future__ import annotations

import argparse
import os
import shlex
from typing import Any

import numpy as np

from launch import study as protocol
from launch.study import Arm, Budget, Claim, Study

DRAWS = 5
GAUSSIAN = {"steps": "fitted in closed form to the training fields: nothing to train"}
ORACLE = {"steps": "held-out fields of the source: nothing to train (the reference, in no claim against DPF)"}
TUNED = ("AdamW.lr",)  # a one-value sweep below the gpu budget: untuned there
NOTHING_TO_TUNE = "the Gaussian fit and the held-out fields have no hyperparameters"
ARMS = (
    Arm("dpf", "DPF (EMA weights)", ("gin/dpf/dpf_method.gin",), tune=TUNED),
    Arm("gaussian", "Gaussian fit", ("gin/dpf/gaussian_fit.gin",), declared=GAUSSIAN),
    Arm("oracle", "held-out data (oracle)", ("gin/dpf/oracle.gin",), declared=ORACLE),
)
# (metric, direction): every column DPF is judged on; COV and MMD only where fields are 3D shapes.
METRICS = (("kid", "lower"), ("precision", "higher"), ("recall", "higher"), ("class_tv", "lower"))
SHAPE_METRICS = (("cov", "higher"), ("mmd", "lower"))
LABELS = {"kid": "KID", "precision": "precision", "recall": "recall", "class_tv": "class TV", "cov": "COV",
          "mmd": "MMD", "nn_train_ratio": "NN-train ratio"}
GPU_RATES = ("5e-4", "1e-3")
SMOKE = ("train.steps = 4", "train.checkpoint_every = 4", "train.log_every = 2", "train.batch_size = 4",
         "FieldDiffusion.eval_samples = 8", "FieldDiffusion.grid_fields = 2", "FieldDiffusion.feature_steps = 5",
         "FieldDiffusion.context_points = 16", "FieldDiffusion.query_points = 8", "DDIMSampler.steps = 2",
         "SphereFields.train_fields = 64", "SphereFields.validation_fields = 16", "SphereFields.eval_fields = 16",
         "SphereFields.holdout_fields = 16", "FieldDenoiser.d_model = 16", "FieldDenoiser.d_latent = 16",
         "FieldDenoiser.num_latents = 4", "WarmupCosine.warmup_steps = 1")


def steps(count: int) -> tuple[str, ...]:
    """Bindings for a DPF run of `count` steps, checkpointed at the end (it never evaluates)."""
    return (f"train.steps = {count}", f"train.checkpoint_every = {count}", f"train.log_every = {max(1, count // 10)}")


# Domain -> (gin file, cpu steps or None (gpu only), gpu steps, 3D shapes). The gpu steps are the
# pre-protocol table's, where DPF beat the Gaussian on every metric of every domain (one seed).
DOMAINS = {
    "sphere": ("gin/dpf/dpf_sphere.gin", 8000, 16000, False),
    "images": ("gin/dpf/dpf_images.gin", None, 12000, False),
    "shapes3d": ("gin/dpf/dpf_shapes3d.gin", None, 48000, True),
}


def claims(shapes: bool) -> tuple[Claim, ...]:
    """DPF beats the Gaussian on every metric; and the check that the test bed can tell data from the
    Gaussian at all (the oracle beats it on KID), without which a DPF loss would mean nothing."""
    out = tuple(Claim(f"dpf_beats_gaussian_{metric}", f"DPF beats the Gaussian fit on {LABELS[metric]}", "dpf",
                      "gaussian", metric=metric, direction=direction, scale=1.0, tuning_note=NOTHING_TO_TUNE)
                for metric, direction in METRICS + (SHAPE_METRICS if shapes else ()))
    return out + (Claim("oracle_beats_gaussian_kid", "held-out data beats the Gaussian fit on KID (the bed can "
                        "tell them apart)", "oracle", "gaussian"),)


def budgets(cpu_steps: int | None, gpu_steps: int) -> dict[str, Budget]:
    out = {"smoke": Budget("smoke", seeds=(0, 1), bindings=SMOKE, sweep={"AdamW.lr": ("1e-3",)},
                           note="4 steps of a tiny model on 64 fields: the pipeline"),
           "gpu": Budget("gpu", seeds=tuple(range(5)), bindings=steps(gpu_steps), sweep={"AdamW.lr": GPU_RATES},
                         tune_seeds=1, note=f"{gpu_steps:,} DPF steps, 5 training seeds, the learning rate chosen on "
                                            "validation: one GPU machine, not run yet")}
    if cpu_steps:
        out["cpu"] = Budget("cpu", seeds=tuple(range(5)), bindings=steps(cpu_steps), sweep={"AdamW.lr": ("1e-3",)},
                            note=f"{cpu_steps:,} DPF steps (the gpu budget trains {gpu_steps:,}), 5 training seeds")
    return out


def measure() -> dict[str, Any]:
    """One run's budget: DPF's steps and batch (0 steps for the methods that train nothing), the
    draws, the samples per draw, the sizes of the fields each split scores against, and the
    feature network's training."""
    import gin

    from engine import config
    from engine.program import configured_steps
    method = gin.query_parameter("scored_fields.method")
    task = config.built("train.task")
    sizes = task.source.sizes
    return {"steps": configured_steps() if method == "dpf" else 0, "batch": gin.query_parameter("train.batch_size"),
            "draws": gin.query_parameter("scored_fields.draws"), "samples per draw": task.eval_samples,
            "validation fields": sizes["validation"], "test fields": sizes["eval"], "holdout fields": sizes["holdout"],
            "feature network steps": task.feature_steps}


def extract(result: Any) -> dict[str, Any]:
    """The means over draws of every split's metrics, each draw's values, and the feature network
    that scored them (its file's sha256: the same for every row)."""
    metrics = {f"{split}/{name}": value for split, values in result.metrics.items() for name, value in values.items()}
    return {"metrics": metrics, "finished": result.finished,
            "extra": {"draws": result.draws, "feature_net": result.feature_net}}


def make_study(domain: str) -> Study:
    gin_file, cpu_steps, gpu_steps, shapes = DOMAINS[domain]
    columns = tuple((LABELS[m], m, 1.0) for m, _ in METRICS[1:] + (SHAPE_METRICS if shapes else ())) + \
        (("NN-train ratio", "nn_train_ratio", 1.0),)
    notes = (
        f"Bed: `{gin_file}`; every arm is one run of `programs/field_scores.py` (`gin/dpf/scored.gin`). Metrics "
        "at the training resolution in the feature space of one small classifier trained once on the training "
        "fields (on one thread), saved and loaded by every run (`tasks/fields/features.py`; every row records its "
        "sha256): KID (lower is better), k-NN precision and recall (k = 3), class TV = total-variation distance "
        "between the predicted-class histograms of samples and data (lower), NN-train ratio = distance from a "
        "sample to its nearest training field over the same for held-out fields (about 1: new fields; well below "
        "1: copies). Reference fields: the validation split chooses, the test split (`eval`) is read once.",
        f"Each run scores {DRAWS} draws of `FieldDiffusion.eval_samples` fields; draw k of seed s uses the same "
        "sample seed in every arm. With 5 or more training seeds (the cpu and gpu budgets) the unit of every mean, "
        "interval and claim is a training seed, its draws averaged, so an interval covers the seed-to-seed spread "
        "of DPF; with fewer it is a (seed, draw) pair, whose interval understates that spread (the draws of one "
        "seed share its trained model).",
        "The oracle is the ceiling the metric allows (held-out fields against held-out fields); the Gaussian "
        "fit is what knowing the first two moments gives.")
    return Study(
        name=f"dpf/{domain}", title=f"DPF, {domain} fields: test-split KID of generated fields",
        arms=ARMS, budgets=budgets(cpu_steps, gpu_steps), claims=claims(shapes), metric="kid", direction="lower",
        select_split="validation", report_split="eval", files=(gin_file, "gin/dpf/scored.gin"),
        bindings=(f"scored_fields.draws = {DRAWS}",), measure=measure, extract=extract, columns=columns,
        notes=notes, draws=DRAWS)


def studies(budget: str) -> list[Study]:
    """Every domain's study that has `budget` (the cpu budget covers the domains this machine affords)."""
    chosen = [make_study(domain) for domain in DOMAINS]
    return [s for s in chosen if budget in s.budgets]


def figure(results: dict, root: str, out: str) -> str:
    """Data, then each arm's seed-0 samples (DPF also at its unseen resolution), one row each."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from engine.summaries import image_grid
    from launch.experiment import parsed_config
    from engine import config
    study = make_study(results["study"].split("/")[1])
    plan = protocol.Plan(study, results["budget"]["name"], root, "")
    rows = []
    for arm in results["arms"]:
        run = next(r for r in arm["runs"] if r["seed"] == results["budget"]["seeds"][0])
        files, bindings = protocol._configuration(study, plan.budget, study.arm(arm["name"]), arm["selected"], run["seed"])
        with parsed_config(files, bindings):
            source = config.built("train.task").source
        saved = np.load(os.path.join(protocol.REPO_ROOT, run["workdir"], "samples.npz"))
        if not rows:
            reference = source.pool("validation").values[:len(saved[f"resolution_{source.train_resolution}"])]
            rows.append(("validation fields (data)", source.render(reference, source.train_resolution)))
        for name in sorted(saved.files, key=lambda n: int(n.split("_")[1])):
            resolution = int(name.split("_")[1])
            unseen = "" if resolution == source.train_resolution else ", unseen resolution"
            rows.append((f"{arm['label']}: {source.describe(resolution)}{unseen}", source.render(saved[name], resolution)))
    figure_, axes = plt.subplots(1, len(rows), figsize=(3.0 * len(rows), 3.4))
    for axis, (title, pictures) in zip(np.atleast_1d(axes), rows):
        grid = image_grid(pictures)
        grid = np.asarray(grid.as_hwc_float() if hasattr(grid, "as_hwc_float") else grid)
        axis.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1,
                    interpolation="nearest")
        axis.set_title(title, fontsize=8)
        axis.axis("off")
    figure_.suptitle(f"{results['title']} ({results['budget']['name']} budget, seed {results['budget']['seeds'][0]}, draw 0)",
                     fontsize=9)
    figure_.tight_layout()
    path = os.path.join(out, results["study"], f"{results['budget']['name']}.png")
    figure_.savefig(path, dpi=80)
    plt.close(figure_)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    protocol.add_arguments(parser, plan=True)
    parser.add_argument("--domains", default=None, help=f"comma-separated subset of {list(DOMAINS)}")
    args = parser.parse_args(argv)
    chosen = studies(args.budget)
    if args.domains:
        wanted = args.domains.split(",")
        chosen = [s for s in chosen if s.name.split("/")[1] in wanted]
    if not chosen:
        parser.error(f"no DPF study has budget {args.budget!r} for domains {args.domains or list(DOMAINS)}")
    if protocol.printed_plan(chosen, args):
        return 0
    command = shlex.join(["python", "launch/reproduce.py", "dpf", *argv])
    code = protocol.main(chosen, args, command)
    if code == 0:
        from launch import tables
        for one in chosen:
            results = tables.load(f"{one.name}/{args.budget}", os.path.abspath(args.out))
            print(f"wrote {figure(results, os.path.abspath(args.workdir), os.path.abspath(args.out))}")
    return code
