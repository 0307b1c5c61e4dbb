"""AAPE at CPU scale: base / new / harmonic-mean accuracy of zero-shot CLIP, CoOp, CoCoOp and AAPE
at several shot counts over seeds, all on one pre-trained (then frozen) mini-CLIP.

    python launch/reproduce.py aape [--shots 1,4,16] [--seeds 0,1,2] [--steps 100]
                                    [--pretrain-steps 1000] [--ablations] [--bind B ...]
    python launch/reproduce.py aape --methods coop,cocoop,aape --ablations --out results/aape/ablations

Pre-trains the mini-CLIP once (gin/aape/clip_pretrain.gin), exports it to safetensors, then
runs gin/aape/{zeroshot,coop,cocoop,aape}.gin from it. Zero-shot accuracy depends on neither
shots nor seed (training fits only a temperature), so it runs once. Writes results/aape/
table.md, results.json, harmonic_mean.png and new_accuracy.png; finished runs are reused.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from typing import Any

from engine.config import REPO_ROOT
from engine.logging import read_metrics
from launch.experiment import markdown_table, mean_std, run_config

METHODS = {  # key: (label, gin file, extra bindings)
    "zeroshot": ("zero-shot CLIP", "gin/aape/zeroshot.gin", []),
    "coop": ("CoOp", "gin/aape/coop.gin", []),
    "cocoop": ("CoCoOp", "gin/aape/cocoop.gin", []),
    "aape": ("AAPE", "gin/aape/aape.gin", []),
}
ABLATIONS = {
    "aape_lambda0": ("AAPE, lambda = 0 (no distillation)", "gin/aape/aape.gin", ["AAPE.distill_weight = 0.0"]),
    "aape_class_embedding": ("AAPE, a(x) added to the class embeddings", "gin/aape/aape.gin",
                             ["AAPE.conditioning = 'class_embedding'"]),
    "aape_mean_aggregator": ("AAPE, mean of the descriptions (no attention)", "gin/aape/aape.gin",
                             ["AAPE.aggregator = 'mean'"]),
}
METHOD_LABELS = {key: label for key, (label, _, _) in {**METHODS, **ABLATIONS}.items()}
METRICS = ("base_accuracy", "new_accuracy", "harmonic_mean", "ood_accuracy")


def quiet_run(files: list[str], bindings: list[str], workdir: str):
    """run_config with the run's console output kept in <workdir>/log.txt."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "log.txt"), "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        return run_config(files, bindings, workdir)


def pretrain(root: str, steps: int, bindings: list[str]) -> tuple[str, dict[str, float]]:
    """Pre-train (or reuse) the mini-CLIP; return its safetensors export and final eval metrics."""
    from engine import checkpoint
    workdir = os.path.join(root, "clip_pretrain")
    result = quiet_run(["gin/aape/clip_pretrain.gin"], [f"train.steps = {steps}", *bindings], workdir)
    export = os.path.join(root, "clip_pretrain.safetensors")
    checkpoint.export_safetensors(result.checkpoint, export)
    return export, {k: float(v) for k, v in result.metrics["eval"].items()}


def prompt_run(method: str, shots: int, seed: int, root: str, backbone: str, steps: int,
               bindings: list[str]) -> dict[str, float]:
    _, gin_file, extra = {**METHODS, **ABLATIONS}[method]
    workdir = os.path.join(root, method, f"shots_{shots}", f"seed_{seed}")
    result = quiet_run([gin_file], [f"BACKBONE = '{backbone}'", f"FewShotBaseToNew.shots = {shots}",
                                    f"FewShotBaseToNew.shots_seed = {seed}", f"train.seed = {seed}",
                                    *([] if method == "zeroshot" else [f"train.steps = {steps}",
                                                                       f"train.eval_every = {steps}"]),
                                    *extra, *bindings], workdir)
    metrics = {k: float(v) for k, v in result.metrics["base_to_new"].items()}
    metrics["ood_accuracy"] = float(result.metrics["ood"]["accuracy"])
    last = [r for r in read_metrics(workdir) if r["split"] == "train"][-1]
    for name in ("attention/distractor_share", "attention/distractor_share_uniform"):
        if name in last:
            metrics[name] = float(last[name])
    return metrics


def table_rows(results: dict[str, dict[int, list[dict[str, float]]]], shots: list[int]) -> list[dict[str, Any]]:
    rows = []
    for k in shots:
        for method, by_shots in results.items():
            runs = by_shots.get(k) or by_shots.get(0)
            if not runs:
                continue
            row = {"shots": k, "method": METHOD_LABELS[method], "seeds": len(runs)}
            row.update({name: mean_std([r[name] for r in runs], percent=True) for name in METRICS})
            rows.append(row)
    return rows


def plot(results: dict, shots: list[int], metric: str, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(4.5, 3.2))
    for method, by_shots in results.items():
        means, spreads = [], []
        for k in shots:
            values = [100 * r[metric] for r in (by_shots.get(k) or by_shots.get(0))]
            means.append(statistics.mean(values))
            spreads.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        every = {**METHODS, **ABLATIONS}
        axis.errorbar(shots, means, yerr=spreads, marker="o", capsize=3, label=every[method][0],
                      color=f"C{list(every).index(method)}")  # one colour per method in every figure
    axis.set_xscale("log", base=2)
    axis.set_xticks(shots, [str(k) for k in shots])
    axis.set_xlabel("shots per base class")
    axis.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", default="1,4,16")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=100, help="prompt-learning steps per run")
    parser.add_argument("--pretrain-steps", type=int, default=1000)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--ablations", action="store_true",
                        help="also run AAPE with lambda = 0, with a(x) added to the class embeddings "
                             "and with a mean aggregator")
    parser.add_argument("--bind", action="append", default=[], help="extra gin binding for the prompt runs")
    parser.add_argument("--runs", default=os.path.join(REPO_ROOT, "runs", "aape"))
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "results", "aape"))
    args = parser.parse_args(argv)
    shots = [int(k) for k in args.shots.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m] + (list(ABLATIONS) if args.ablations else [])
    unknown = set(methods) - set(METHODS) - set(ABLATIONS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {sorted(METHODS)}")
    os.makedirs(args.out, exist_ok=True)

    started = time.perf_counter()
    backbone, pretrain_metrics = pretrain(args.runs, args.pretrain_steps, [])
    pretrain_minutes = (time.perf_counter() - started) / 60
    print(f"pre-trained mini-CLIP ({pretrain_minutes:.1f} min): "
          + ", ".join(f"{k} {v:.3f}" for k, v in pretrain_metrics.items()), flush=True)
    results: dict[str, dict[int, list[dict[str, float]]]] = {m: {} for m in methods}
    minutes: dict[str, float] = {}
    for method in methods:
        began = time.perf_counter()
        for k in [0] if method == "zeroshot" else shots:
            for seed in [0] if method == "zeroshot" else seeds:
                metrics = prompt_run(method, max(k, 1), seed, args.runs, backbone, args.steps, args.bind)
                results[method].setdefault(k, []).append(metrics)
                print(f"{method} shots={k} seed={seed}: "
                      + ", ".join(f"{name} {metrics[name]:.3f}" for name in METRICS), flush=True)
        minutes[method] = (time.perf_counter() - began) / 60
    total = (time.perf_counter() - started) / 60

    rows = table_rows(results, shots)
    command = "python launch/reproduce.py aape " + " ".join(argv or [])
    lines = [
        "# AAPE at CPU scale: few-shot base-to-new prompt learning on a frozen mini-CLIP", "",
        f"Command: `{command.strip()}`", "",
        f"Budget: mini-CLIP pre-trained for {args.pretrain_steps} steps of 128 pairs ({pretrain_minutes:.1f} min in "
        "this command; finished runs are reused, not trained again); "
        f"each prompt run {args.steps} steps of 32 images; seeds {seeds} (seed = few-shot draw + initialisation); "
        f"total {total:.1f} min on this machine ("
        + ", ".join(f"{m} {v:.1f} min" for m, v in minutes.items()) + ").", "",
        "Pre-trained backbone (eval split of clip_pretrain): "
        + ", ".join(f"{k} {v:.3f}" for k, v in pretrain_metrics.items()) + ".", "",
        "Accuracy in % (mean ± standard deviation over seeds): base classes among the 24 base classes, new "
        "classes among the 24 new ones, their harmonic mean, and base classes in rotated / recoloured images "
        "(ood). Zero-shot runs once (its accuracy depends on neither shots nor seed).", "",
        markdown_table(rows, ["shots", "method", "seeds", *METRICS]),
    ]
    for method, by_shots in results.items():  # per method: a mean aggregator gives uniform weights by design
        shares = [(r["attention/distractor_share"], r["attention/distractor_share_uniform"])
                  for runs in by_shots.values() for r in runs if "attention/distractor_share" in r]
        if shares:
            lines += ["", f"{METHOD_LABELS[method]}: the aggregator puts "
                          f"{100 * statistics.mean(a for a, _ in shares):.1f}% of its weight on distractor descriptions, "
                          f"against {100 * statistics.mean(b for _, b in shares):.1f}% for uniform weights (mean over "
                          f"{len(shares)} runs, last logged training step)."]
    with open(os.path.join(args.out, "table.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump({"pretrain": pretrain_metrics, "results": results, "minutes": minutes}, handle, indent=1)
    plot(results, shots, "harmonic_mean", os.path.join(args.out, "harmonic_mean.png"))
    plot(results, shots, "new_accuracy", os.path.join(args.out, "new_accuracy.png"))
    print("\n".join(lines[2:]))
    return 0
