"""Exploring the Limits of Large Scale Pre-training (Abnar et al. 2022) at CPU scale: ViT,
MLP-Mixer and ResNet of two sizes trained on 384 procedural shape classes with varied data
fraction, epochs and head weight decay; few-shot probes of every layer on five downstream tasks
near and far from upstream; per task the upper hull, the fit e_DS = k e_US^alpha + e_IR on it,
its held-out error, and the accuracy-vs-layer curves.

    python launch/reproduce.py saturation [--steps 300,1000] [--fractions 0.1,1.0] [--head-wd 3.0]

Writes results/saturation/{table.md, <task>_saturation.png, <task>_layers.png}. Resumable.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from engine.config import REPO_ROOT
from launch.experiment import markdown_table
from launch.reproductions import _saturation_plots as plots
from launch.reproductions._saturation_fits import holdout_error, saturation_fit, upper_convex_hull
from launch.reproductions._scaling import fmt, load_note, training_minutes, write
from launch.sweep import Interrupted, sweep

MODELS = ("vit_tiny", "vit_small", "mixer_tiny", "mixer_small", "resnet_tiny", "resnet_small")
# source -> (how far from upstream, number of classes)
SOURCES = {"coarse_shape": ("near", 6), "texture_frequency": ("far", 2), "object_count": ("far", 4),
           "noise_level": ("far", 4), "digits": ("far, other domain", 10)}
DEFAULT_HEAD_WD = 0.01   # HEAD_WD in gin/saturation/upstream.gin (the body's AdamW weight decay)
NUM_EXAMPLES = 20000     # ShapesUpstream.num_examples in gin/saturation/upstream.gin
BATCH_SIZE = 64


def numbers(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def bindings() -> list[str]:
    # Evaluate (and checkpoint) only at the last step: eval_every > steps still evaluates there.
    return ["train.eval_every = 1000000", "train.checkpoint_every = 1000000", "train.log_every = 100",
            f"train.batch_size = {BATCH_SIZE}"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="model files of gin/saturation/model/")
    parser.add_argument("--fractions", default="0.1,1.0", help="upstream data fractions")
    parser.add_argument("--steps", default="300,1000", help="training steps (epochs follow from the fraction)")
    parser.add_argument("--head-wd", default="3.0",
                        help="raised head weight decays, each run once per model at the largest fraction and steps")
    parser.add_argument("--extra", action="append", default=[], help="binding for every run (tests use it)")
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "runs", "reproductions", "saturation"))
    parser.add_argument("--results", default=os.path.join(REPO_ROOT, "results", "saturation"))
    args = parser.parse_args(argv)
    models, fractions, steps = numbers(args.models), numbers(args.fractions), numbers(args.steps)
    largest = [max(fractions, key=float)], [max(steps, key=int)]
    grids = [[("MODEL", models), ("ShapesUpstream.data_fraction", fractions), ("train.steps", steps),
              ("HEAD_WD", [str(DEFAULT_HEAD_WD)])]]
    if numbers(args.head_wd):
        grids.append([("MODEL", models), ("ShapesUpstream.data_fraction", largest[0]), ("train.steps", largest[1]),
                      ("HEAD_WD", numbers(args.head_wd))])
    start, records = time.time(), []
    for axes in grids:
        try:
            records += sweep(["gin/saturation/upstream.gin"], axes, bindings() + args.extra, args.out)
        except Interrupted:
            return 1
    report([summarize(r) for r in records], args, records, (time.time() - start) / 60)
    return 0


def summarize(record: dict) -> dict:
    """A run's axes, upstream accuracy and few-shot accuracies {source: {shots: {layer: acc}}}."""
    axes, upstream = record["axes"], record["upstream"]
    family, size = axes["MODEL"].split("_", 1)
    fraction, steps = float(axes["ShapesUpstream.data_fraction"]), int(axes["train.steps"])
    ds: dict[str, dict[int, dict[str, float]]] = {}
    for key, value in upstream.items():
        parts = key.split("/")
        if parts[0] != "fewshot" or len(parts) < 3 or not parts[2].endswith("shot"):
            continue
        layer = parts[3] if len(parts) > 3 else "pre_logits"
        ds.setdefault(parts[1], {}).setdefault(int(parts[2][:-4]), {})[layer] = value
    return {"name": record["name"], "model": axes["MODEL"], "family": family, "size": size, "fraction": fraction,
            "steps": steps, "epochs": steps * record["batch_size"] / (fraction * NUM_EXAMPLES),
            "head_wd": float(axes["HEAD_WD"]), "params": record["parameters"], "us": upstream["accuracy"], "ds": ds}


def fit_task(runs: list[dict], source: str, shots: int) -> dict:
    """Hull, Eq. 1 fit on it, and held-out error, for one downstream task and shot count."""
    us = np.array([r["us"] for r in runs])
    ds = np.array([r["ds"][source][shots]["pre_logits"] for r in runs])
    hull = upper_convex_hull(us, ds)
    from scipy.stats import spearmanr
    out: dict = {"ds": ds, "hull": hull, "fit": None, "holdout": None,
                 "gap": np.interp(us, us[hull], ds[hull]) - ds,  # how far each run is below the frontier
                 "spearman": float(spearmanr(us, ds).statistic) if np.ptp(us) > 0 and np.ptp(ds) > 0 else float("nan")}
    if len(hull) >= 3:
        out["fit"] = saturation_fit(1 - us[hull], 1 - ds[hull])
    try:
        out["holdout"] = holdout_error(us, ds, held_out_fraction=0.25)
    except ValueError:  # too few hull points left after holding out the best models
        pass
    return out


def best_layers(runs: list[dict], source: str, shots: int) -> dict[str, list[tuple[float, float]]]:
    """Per model (default head weight decay), its best-upstream run's accuracy against relative depth."""
    curves = {}
    for model in sorted({r["model"] for r in runs}):
        candidates = [r for r in runs if r["model"] == model and r["head_wd"] == DEFAULT_HEAD_WD]
        if not candidates:
            continue
        best = max(candidates, key=lambda r: r["us"])
        layers = sorted((k for k in best["ds"][source][shots] if k.startswith("layer_")), key=lambda k: int(k[6:]))
        curves[model] = [(int(k[6:]) / len(layers), best["ds"][source][shots][k]) for k in layers]
    return curves


def report(runs: list[dict], args, records: list[dict], minutes: float) -> None:
    os.makedirs(args.results, exist_ok=True)
    sources = [s for s in runs[0]["ds"]]
    all_shots = sorted(runs[0]["ds"][sources[0]])
    most = all_shots[-1]  # the paper's main text reports 25-shot accuracy
    runs_table = [{"model": r["model"], "params": f"{r['params'] / 1e3:.0f}K", "data fraction": f"{r['fraction']:g}",
                   "steps": r["steps"], "epochs": f"{r['epochs']:.1f}", "head wd": f"{r['head_wd']:g}",
                   "upstream acc": fmt(r["us"]),
                   **{s: fmt(r["ds"][s][most]["pre_logits"]) for s in sources}} for r in sorted(runs, key=lambda r: r["us"])]
    fit_rows, layer_rows, gaps = [], [], {}
    for source in sources:
        distance, classes = SOURCES.get(source, ("?", 0))
        for shots in all_shots:
            result = fit_task(runs, source, shots)
            fit, held = result["fit"], result["holdout"]
            fit_rows.append({"task": source, "distance": distance, "shots": shots,
                             "best DS acc": fmt(float(result["ds"].max())), "Spearman(US, DS)": fmt(result["spearman"], ".2f"),
                             "hull points": len(result["hull"]),
                             "k": fmt(fit and fit.k, ".2f"), "alpha": fmt(fit and fit.alpha, ".2f"),
                             "e_IR": fmt(fit and fit.e_ir), "saturation 1-e_IR": fmt(fit and fit.saturation),
                             "fit rmse": fmt(fit and fit.rmse),
                             "fit degenerate": (fit.degenerate or "no") if fit else "no fit", "held-out MAE (hull fit)": fmt(held and held.hull),
                             "held-out MAE (all-points fit)": fmt(held and held.all_points)})
            if shots == most:
                gaps[source] = result["gap"]
                plots.saturation_plot(os.path.join(args.results, f"{source}_saturation.png"), runs, result["ds"],
                                      result["hull"], fit, f"{source} ({distance}), {most}-shot", DEFAULT_HEAD_WD)
        curves = best_layers(runs, source, most)
        plots.layer_plot(os.path.join(args.results, f"{source}_layers.png"), curves,
                         f"{source} ({distance}): {most}-shot accuracy by layer", 1 / classes if classes else None)
        for model, points in curves.items():
            best_depth, best_acc = max(points, key=lambda p: p[1])
            layer_rows.append({"task": source, "model (best-upstream run)": model, "layers": len(points),
                               "best layer": int(round(best_depth * len(points))),
                               "best-layer acc": fmt(best_acc), "last-layer acc": fmt(points[-1][1])})
    text = header(runs, args, records, minutes) + markdown_table(runs_table, list(runs_table[0]))
    text += ("\n## Saturation fits on the upper hull\n\nEq. 1 fitted to the hull vertices of (upstream, "
             "downstream) accuracy; held-out: the 25% of runs with the best upstream accuracy are left out, "
             "the rest fitted (hull or all points), and the held-out hull vertices predicted.\n\n"
             + markdown_table(fit_rows, list(fit_rows[0])))
    text += (f"\n## Distance below the frontier ({most}-shot)\n\nMean of (hull at the run's upstream accuracy "
             "- its downstream accuracy) per group of runs: 0 means every run of the group is on the frontier.\n\n"
             + markdown_table(gap_rows(runs, gaps), ["runs", "count", *sources]))
    text += (f"\n## Best layer ({most}-shot)\n\n" + markdown_table(layer_rows, list(layer_rows[0])))
    pairs = head_wd_pairs(runs, sources, most)
    if pairs:
        text += ("\n## Raised head weight decay (same model, data and steps)\n\n"
                 + markdown_table(pairs, list(pairs[0])))
    write(os.path.join(args.results, "table.md"), text)
    print(text)


def gap_rows(runs: list[dict], gaps: dict[str, np.ndarray]) -> list[dict]:
    """Mean distance below the frontier by family, by data fraction, and for the raised head decay."""
    groups = {f"family {f}": [r["family"] == f for r in runs] for f in sorted({r["family"] for r in runs})}
    default = [r["head_wd"] == DEFAULT_HEAD_WD for r in runs]
    for fraction in sorted({r["fraction"] for r in runs}):
        groups[f"data fraction {fraction:g}"] = [d and r["fraction"] == fraction for d, r in zip(default, runs)]
    groups["head weight decay raised"] = [not d for d in default]
    rows = []
    for name, chosen in groups.items():
        chosen = np.asarray(chosen)
        if chosen.any():
            rows.append({"runs": name, "count": int(chosen.sum()),
                         **{s: fmt(float(gap[chosen].mean())) for s, gap in gaps.items()}})
    return rows


def head_wd_pairs(runs: list[dict], sources: list[str], shots: int) -> list[dict]:
    """Change in upstream and downstream accuracy when only the head's weight decay is raised."""
    base = {(r["model"], r["fraction"], r["steps"]): r for r in runs if r["head_wd"] == DEFAULT_HEAD_WD}
    rows = []
    for r in runs:
        other = base.get((r["model"], r["fraction"], r["steps"]))
        if r["head_wd"] == DEFAULT_HEAD_WD or other is None:
            continue
        rows.append({"model": r["model"], "head wd": f"{other['head_wd']:g} -> {r['head_wd']:g}",
                     "upstream": f"{r['us'] - other['us']:+.3f}",
                     **{s: f"{r['ds'][s][shots]['pre_logits'] - other['ds'][s][shots]['pre_logits']:+.3f}"
                        for s in sources}})
    return rows


def header(runs: list[dict], args, records: list[dict], minutes: float) -> str:
    command = "python launch/reproduce.py saturation" + "".join(
        f" --{flag} {value}" for flag, value, default in (
            ("models", args.models, ",".join(MODELS)), ("fractions", args.fractions, "0.1,1.0"),
            ("steps", args.steps, "300,1000"), ("head-wd", args.head_wd, "3.0")) if value != default)
    timing = f"{training_minutes(records):.0f} min in training loops" + (
        f", {minutes:.0f} min wall for this invocation (it trains only the runs missing from the sweep's records)"
        if minutes >= 1 else "")
    return (f"# Upstream vs downstream saturation at CPU scale\n\nCommand: `{command}`  \n"
            f"Budget: {len(runs)} runs (batch {BATCH_SIZE}, 16x16 images, {NUM_EXAMPLES} upstream training images "
            f"at data fraction 1); {timing} (1 thread per run; {load_note()} when the report was written).  \n"
            "Upstream: accuracy on 2,000 held-out images of 384 classes (chance 0.003). Downstream: closed-form "
            "least-squares probe on frozen pre-logits (and every layer), mean over 3 draws of the shots, test sets of "
            "up to 100 images per class; chance is 1/6, 1/2, 1/4, 1/4 and 1/10.\n\n")
