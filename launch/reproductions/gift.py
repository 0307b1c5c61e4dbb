"""GIFT at CPU scale: target accuracy per method and per round for three shifts over seeds.

    python launch/reproduce.py gift [--seeds 0,1,2] [--shifts digits,moons,shapes] [--bind B ...]

Every method of one (shift, seed) starts from the same source model (`source_workdir`), so
the comparison is between adaptation methods, not source runs. Writes results/gift/table.md,
results.json, target_per_round.png and domains.png; finished runs are reused when run again.
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
from launch.experiment import markdown_table, mean_std, run_config

SHIFTS = {  # name: (overlay gin files, description)
    "digits": ([], "digits rotated 0-5 deg -> 30-35 deg, MLP"),
    "digits60": (["gin/gift/digits_60.gin"], "digits rotated 0-5 deg -> 55-60 deg, MLP"),
    "moons": (["gin/gift/moons.gin"], "two-moons rotated 0-5 deg -> 50-55 deg, MLP"),
    "shapes": (["gin/gift/shapes.gin"], "shapes: smaller, blurred, recoloured, SmallCNN"),
}
# key: (label, gin file, program whose source_workdir is shared, or None for a plain train run)
METHODS = {
    "st1": ("self-training, 1 round", "gin/gift/self_training.gin", "self_training"),
    "st5": ("self-training, 5 rounds", "gin/gift/iterative_self_training.gin", "self_training"),
    "gift": ("GIFT", "gin/gift/gift.gin", "gift"),
    "gift_teacher": ("GIFT, teacher labels (official code)", "gin/gift/gift_teacher_labels.gin", "gift"),
    "gradual": ("gradual self-training (real intermediates)", "gin/gift/gradual_self_training.gin",
                "gradual_self_training"),
    "oracle": ("target oracle (target labels)", "gin/gift/target_oracle.gin", None),
}
SOURCE_ONLY = "source"


def run_method(shift: str, method: str, seed: int, root: str, bindings: list[str]) -> list[float]:
    """Target accuracy after each stage (the source stage first); one number for a plain run."""
    _, gin_file, program = METHODS[method]
    base = os.path.join(root, shift, f"seed_{seed}")
    workdir = os.path.join(base, method)
    extra = [f"train.seed = {seed}"] + bindings
    if program:
        extra.append(f"{program}.source_workdir = '{os.path.join(base, 'source')}'")
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "log.txt"), "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        result = run_config([gin_file, *SHIFTS[shift][0]], extra, workdir)
    if program:
        return [float(v) for v in result.target_accuracy]
    return [float(result.metrics["target"]["accuracy"])]


def label(method: str) -> str:
    return "source only" if method == SOURCE_ONLY else METHODS[method][0]


def summary_rows(results: dict, shifts: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    rows = []
    for method in [SOURCE_ONLY, *METHODS]:
        row = {"method": label(method)}
        for shift in shifts:
            runs = results[shift]
            adapting = [m for m in runs if METHODS[m][2]]  # their first stage is the shared source model
            if method == SOURCE_ONLY:
                finals = [runs[adapting[0]][seed][0] for seed in seeds] if adapting else []
            else:
                finals = [runs[method][seed][-1] for seed in seeds] if method in runs else []
            row[shift] = mean_std(finals, percent=True) if finals else ""
        rows.append(row)
    return rows


def round_rows(results: dict, shift: str, seeds: list[int]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of mean target accuracy per stage for the multi-stage methods, and their columns."""
    rows, longest = [], 0
    for method, per_seed in results[shift].items():
        curves = [per_seed[seed] for seed in seeds]
        if len(curves[0]) < 2:
            continue
        row = {"method": label(method)}
        for k in range(len(curves[0])):
            row["source" if k == 0 else f"round {k}"] = mean_std([c[k] for c in curves], percent=True)
        rows.append(row)
        longest = max(longest, len(curves[0]))
    return rows, ["method", "source", *[f"round {k}" for k in range(1, longest)]]


def gift_versus_self_training(results: dict, shifts: list[str], seeds: list[int]) -> list[dict[str, Any]]:
    """Per-seed difference of final target accuracy, GIFT minus 5-round self-training."""
    rows = []
    for shift in shifts:
        runs = results[shift]
        if "gift" not in runs or "st5" not in runs:
            continue
        deltas = [100 * (runs["gift"][s][-1] - runs["st5"][s][-1]) for s in seeds]
        rows.append({"shift": shift, **{f"seed {s}": f"{d:+.1f}" for s, d in zip(seeds, deltas)},
                     "mean": f"{statistics.mean(deltas):+.1f}",
                     "GIFT better on": f"{sum(d > 0 for d in deltas)}/{len(deltas)} seeds"})
    return rows


def plot_rounds(results: dict, shifts: list[str], seeds: list[int], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    figure, axes = plt.subplots(1, len(shifts), figsize=(4.2 * len(shifts), 4.0), squeeze=False)
    for axis, shift in zip(axes[0], shifts):
        for method, per_seed in results[shift].items():
            curves = [per_seed[s] for s in seeds]
            means = [statistics.mean(c[k] for c in curves) for k in range(len(curves[0]))]
            if len(means) == 1:
                axis.axhline(means[0], linestyle="--", color="gray", label=label(method))
                continue
            spread = [statistics.stdev(c[k] for c in curves) if len(curves) > 1 else 0 for k in range(len(means))]
            # Every method spends the same adaptation budget, in 1 or in several rounds.
            budget_used = [k / (len(means) - 1) for k in range(len(means))]
            axis.errorbar(budget_used, means, yerr=spread, marker="o", capsize=2, label=label(method))
        axis.set_title(shift)
        axis.set_xlabel("fraction of the adaptation budget (0 = source model)")
        axis.set_ylabel("target accuracy")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


@contextlib.contextmanager
def parsed(shift: str, bindings: list[str]):
    """Gin parsed as the reproduction's GIFT run of `shift` parses it (reset afterwards)."""
    from launch.experiment import parsed_config
    with parsed_config(["gin/gift/gift.gin", *SHIFTS[shift][0]], bindings):
        yield


def configured_domains(shift: str, bindings: list[str]):
    """The domain task exactly as the reproduction's gin files and bindings build it."""
    import gin
    with parsed(shift, bindings):
        return gin.query_parameter("gift.domains").scoped_configurable_fn()


def budget(shift: str, bindings: list[str]) -> str:
    import gin
    with parsed(shift, bindings):
        value = gin.query_parameter
        return (f"{shift}: source model {value('%SOURCE_STEPS')} steps; {value('gift.rounds')} rounds x "
                f"{value('%ROUND_STEPS')} steps (one-round self-training: {value('%ALL_ROUNDS_STEPS')}); "
                f"oracle {value('%SOURCE_STEPS')} steps on target labels; batch {value('train.batch_size')}")


def plot_domains(shifts: list[str], bindings: list[str], path: str) -> None:
    """A few training examples of every domain, source to target, for each shift."""
    import matplotlib
    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import pyplot as plt
    tasks = {shift: configured_domains(shift, bindings) for shift in shifts}
    columns = max(len(t.domains) for t in tasks.values())
    figure, axes = plt.subplots(len(shifts), columns, figsize=(1.6 * columns, 1.7 * len(shifts)), squeeze=False)
    for row, (shift, task) in enumerate(tasks.items()):
        for axis in axes[row]:
            axis.set_xticks([]), axis.set_yticks([])
        for col, domain in enumerate(task.domains):
            axis, pool = axes[row][col], task.labelled_pool(domain)
            axis.set_title(domain.replace("intermediate_", "step "), fontsize=7)
            if shift == "moons":
                axis.scatter(*pool["inputs"][:300].T, c=pool["label"][:300], s=2, cmap="coolwarm")
                continue
            images = pool["image"][:4]
            tiles = np.concatenate([np.concatenate(list(images[:2]), -1), np.concatenate(list(images[2:4]), -1)], -2)
            axis.imshow(tiles.transpose(1, 2, 0).squeeze(), cmap="gray", vmin=0, vmax=1)
        axes[row][0].set_ylabel(shift)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_table(results: dict, shifts: list[str], seeds: list[int], args, seconds: float, path: str) -> None:
    command = "python launch/reproduce.py gift " + " ".join(
        [f"--seeds {','.join(map(str, seeds))}", f"--shifts {','.join(shifts)}"] + [f"--bind '{b}'" for b in args.bind])
    lines = ["# GIFT reproduction: target accuracy (%), mean ± std over seeds", "",
             f"Command: `{command}`  ", f"Wall time of this invocation: {seconds / 60:.1f} min on this machine's CPU "
             "(one thread, shared with other jobs; finished runs are reused, not retrained).  ",
             "Budget per (shift, seed), one shared source model per seed:  ",
             *[f"- {budget(shift, args.bind)}" for shift in shifts], "",
             "Shifts: " + "; ".join(f"**{s}**: {SHIFTS[s][1]}" for s in shifts) + ".", "",
             "## Final target accuracy", "",
             markdown_table(summary_rows(results, shifts, seeds), ["method", *shifts]),
             "## GIFT minus 5-round self-training (final target accuracy, points)", "",
             markdown_table(gift_versus_self_training(results, shifts, seeds),
                            ["shift", *[f"seed {s}" for s in seeds], "mean", "GIFT better on"])]
    for shift in shifts:
        rows, columns = round_rows(results, shift, seeds)
        lines += [f"## Target accuracy per round: {shift}", "", markdown_table(rows, columns)]
    with open(path, "w") as handle:
        handle.write("\n".join(lines))


def replot(out: str) -> int:
    """Redraw both plots from a finished reproduction's results.json (no training, table untouched)."""
    with open(os.path.join(out, "results.json")) as handle:
        saved = json.load(handle)
    results = {shift: {method: {int(seed): curve for seed, curve in per_seed.items()}
                       for method, per_seed in runs.items()} for shift, runs in saved["target_accuracy"].items()}
    shifts = list(results)
    plot_rounds(results, shifts, saved["seeds"], os.path.join(out, "target_per_round.png"))
    plot_domains(shifts, saved["bindings"], os.path.join(out, "domains.png"))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--shifts", default=",".join(SHIFTS), help=f"comma-separated, from {','.join(SHIFTS)}")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {','.join(METHODS)}")
    parser.add_argument("--bind", action="append", default=[], help="extra gin binding for every run")
    parser.add_argument("--workdir", default=os.path.join(REPO_ROOT, "runs", "reproduce_gift"))
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "results", "gift"))
    parser.add_argument("--replot", action="store_true", help="redraw the plots from OUT/results.json only")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    shifts = args.shifts.split(",")
    methods = args.methods.split(",")
    unknown = [s for s in shifts if s not in SHIFTS] + [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown shift or method {unknown}; shifts {list(SHIFTS)}, methods {list(METHODS)}")
    os.makedirs(args.out, exist_ok=True)
    if args.replot:
        return replot(args.out)
    start = time.time()
    results: dict[str, dict[str, dict[int, list[float]]]] = {s: {} for s in shifts}
    for shift in shifts:
        for method in methods:
            for seed in seeds:
                began = time.time()
                curve = run_method(shift, method, seed, args.workdir, args.bind)
                results[shift].setdefault(method, {})[seed] = curve
                print(f"{shift:7s} {method:13s} seed {seed}: target {' '.join(f'{100 * v:.1f}' for v in curve)}"
                      f"  ({time.time() - began:.0f} s)", flush=True)
    seconds = time.time() - start
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump({"seeds": seeds, "bindings": args.bind, "seconds": seconds, "target_accuracy": results},
                  handle, indent=1)
    write_table(results, shifts, seeds, args, seconds, os.path.join(args.out, "table.md"))
    plot_rounds(results, shifts, seeds, os.path.join(args.out, "target_per_round.png"))
    plot_domains(shifts, args.bind, os.path.join(args.out, "domains.png"))
    print(f"wrote {args.out}/table.md, results.json, target_per_round.png, domains.png "
          f"({seconds / 60:.1f} min)")
    return 0
