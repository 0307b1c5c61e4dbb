"""Hyper-UT at CPU scale: six C-PVR models and ViT vs U-ViT vs HyperU-ViT on two image sets.

    python launch/reproduce.py hyperut [--seeds 0,1] [--steps N] [--image-steps N] [--only cpvr|images]
                                       [--jobs 16] [--bind 'LENGTH = 24']

C-PVR: Transformer, UT, UT+ACT, Hyper (FFN), Hyper-UT (FFN) and Hyper-UT train with the same
budget and seeds on the training hops of gin/hyperut/cpvr_hops.gin and are evaluated on every hop
count; the table gives per-hop accuracy, the accuracy on examples the chain-free shortcut gets wrong, and mean ponder
steps, in and out of the training range. Images: ViT vs U-ViT vs HyperU-ViT on scikit-learn
digits and on textured shapes: accuracy, average layers used and measured FLOPs per image
(halted images really leave the batch, so the FLOP counter sees the saving).
Writes results/hyperut/{table.md, cpvr_hops.png, images.png}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any, Sequence

from engine.config import REPO_ROOT
from launch.experiment import markdown_table, mean_std, run_config

CPVR_MODELS = (  # name, run folder, gin files (later files win)
    ("Transformer", "Transformer",
     ("gin/hyperut/transformer_pvr.gin", "gin/hyperut/cpvr_hops.gin", "gin/hyperut/transformer_cpvr.gin")),
    ("UT", "UT", ("gin/hyperut/ut_pvr.gin",)),
    ("UT+ACT", "UT_ACT", ("gin/hyperut/ut_act_pvr.gin",)),
    ("Hyper (FFN)", "Hyper", ("gin/hyperut/hyper_pvr.gin",)),
    ("Hyper-UT (FFN)", "Hyper-UT_FFN", ("gin/hyperut/hyperut_ffn_pvr.gin",)),
    ("Hyper-UT", "Hyper-UT", ("gin/hyperut/hyperut_pvr.gin",)),
)
IMAGE_MODELS = (
    ("ViT", "gin/hyperut/vit_digits.gin", "ViT"),
    ("U-ViT", "gin/hyperut/uvit_digits.gin", "UniversalViT"),
    ("HyperU-ViT", "gin/hyperut/hyperut_vit_digits.gin", "HyperUViT"),
)
IMAGE_TASKS = (  # name, extra gin file (None: digits as in the files), steps (32x32 costs ~4x per step)
    ("digits 16x16", None, 1000),
    ("textured shapes 32x32", "gin/hyperut/textured_shapes.gin", 600),
)


def final_eval(result: Any) -> dict[str, float]:
    return {k: float(v) for k, v in result.metrics.get("eval", {}).items() if isinstance(v, (int, float))}


def train_once(files: Sequence[str], bindings: Sequence[str], workdir: str) -> tuple[Any, float]:
    """Run a configuration (a finished run in `workdir` only reports again) and return its result
    with the CPU seconds its training took, remembered beside the run for later reports."""
    record = os.path.join(workdir, "cpu_seconds.json")
    start = time.process_time()
    result = run_config(files, bindings, workdir)
    if not os.path.exists(record):
        with open(record, "w") as handle:
            json.dump({"cpu_seconds": time.process_time() - start}, handle)
    with open(record) as handle:
        return result, json.load(handle)["cpu_seconds"]


def _train_only(files: Sequence[str], bindings: Sequence[str], workdir: str) -> None:
    torch_threads()
    train_once(files, bindings, workdir)


def train_in_parallel(runs: Sequence[tuple[Sequence[str], Sequence[str], str]], jobs: int) -> None:
    """Train `runs` in `jobs` fresh processes at once (one thread each); the report loops then find
    them finished and only evaluate them again. jobs <= 1: nothing here, they train in the loop."""
    if jobs <= 1 or not runs:
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(min(jobs, len(runs)), mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in [pool.submit(_train_only, *run) for run in runs]:
            future.result()


def logged_eval(run_dir: str) -> dict[str, float] | None:
    """The last evaluation a run logged, with its step and the CPU seconds it recorded (NaN when it
    was stopped before the end): the table of runs trained elsewhere, without their checkpoints."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        evals = [r for r in map(json.loads, handle) if r.get("split") == "eval"]
    if not evals:
        return None
    metrics = {k: float(v) for k, v in evals[-1].items() if isinstance(v, (int, float))}
    record = os.path.join(run_dir, "cpu_seconds.json")
    metrics["seconds"] = json.load(open(record))["cpu_seconds"] if os.path.exists(record) else float("nan")
    return metrics


def cpvr_runs(args: argparse.Namespace, workdir: str) -> list[tuple[str, int, Sequence[str], list[str], str]]:
    """(model, seed, gin files, bindings, run directory) of every C-PVR run, in report order."""
    seeds = [int(s) for s in args.seeds.split(",")]
    wanted = args.models.split(",") if args.models else [name for name, _, _ in CPVR_MODELS]
    runs = []
    for name, folder, files in CPVR_MODELS:
        if name not in wanted:
            continue
        for seed in seeds:
            bindings = [f"train.seed = {seed}", "train.checkpoint_every = 0", "train.log_every = 100"]
            if args.steps:
                bindings += [f"train.steps = {args.steps}", f"train.eval_every = {args.steps}"]
            bindings += list(args.bind)
            runs.append((name, seed, files, bindings,
                         os.path.join(workdir, "cpvr", folder, f"seed{seed}")))
    return runs


def run_cpvr(args: argparse.Namespace, workdir: str) -> tuple[list[dict], dict[str, list[dict]]]:
    runs = cpvr_runs(args, workdir)
    if not args.from_logs:
        train_in_parallel([(files, bindings, run_dir) for _, _, files, bindings, run_dir in runs], args.jobs)
    per_model: dict[str, list[dict]] = {}
    for name, seed, files, bindings, run_dir in runs:
        if args.from_logs:
            metrics = logged_eval(run_dir)
            if metrics is None:
                continue
        else:
            result, seconds = train_once(files, bindings, run_dir)
            metrics = dict(final_eval(result), seconds=seconds, step=result.step)
            if name == "Hyper-UT" and seed == runs[0][1]:
                save_ponder_map(result.model, files, bindings, os.path.join(args.out, "ponder_map.png"))
        per_model.setdefault(name, []).append(metrics)
        print(f"{name} seed {seed}: accuracy in {metrics.get('accuracy/in_range', float('nan')):.3f} "
              f"out {metrics.get('accuracy/out_of_range', float('nan')):.3f} ({metrics['seconds']:.0f} s)",
              flush=True)
    rows = []
    for name, runs in per_model.items():
        row = {"model": name}
        for key, column in (("accuracy/in_range", "acc. in range"), ("accuracy/out_of_range", "acc. out of range"),
                            ("accuracy_no_shortcut/in_range", "no-shortcut acc. in"),
                            ("accuracy_no_shortcut/out_of_range", "no-shortcut acc. out"),
                            ("ponder/in_range", "ponder in"), ("ponder/out_of_range", "ponder out")):
            row[column] = mean_std([r.get(key, float("nan")) for r in runs])
        row["steps"] = "/".join(f"{r['step']:.0f}" for r in runs)
        seconds = [r["seconds"] for r in runs if r["seconds"] == r["seconds"]]
        row["CPU s / run"] = f"{statistics.mean(seconds):.0f}" if seconds else "n/a"
        rows.append(row)
    return rows, per_model


def save_ponder_map(model: Any, files: Sequence[str], bindings: Sequence[str], path: str) -> None:
    """The TensorBoard ponder heat map of the first eval batch (one example per hop), as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import torch
    from matplotlib import pyplot as plt

    from engine.data import Shard
    task = _task_for(files, bindings)
    batch = next(iter(task.batches("eval", Shard(batch_size=64))))
    model.eval()
    with torch.no_grad():
        image = task.ponder_heatmap(batch, task.forward(model, batch))
    if image is not None:
        plt.imsave(path, image.as_hwc_float())


def hop_table(per_model: dict[str, list[dict]], prefix: str, hops: range) -> str:
    rows = []
    for name, runs in per_model.items():
        row = {"model": name}
        for k in hops:
            values = [r.get(f"{prefix}/hops_{k}", float("nan")) for r in runs]
            values = [v for v in values if v == v]
            row[f"{k}"] = statistics.mean(values) if values else None
        rows.append(row)
    return markdown_table(rows, ["model"] + [f"{k}" for k in hops], floatfmt=".2f")


def run_images(args: argparse.Namespace, workdir: str) -> list[dict]:
    import torch

    from engine.analysis import measured_flops
    from engine.data import Shard
    runs = []
    for task_name, task_file, task_steps in IMAGE_TASKS:
        if args.image_tasks and task_name.split()[0] not in args.image_tasks.split(","):
            continue
        for name, gin_file, _ in IMAGE_MODELS:
            files = [gin_file] + ([task_file] if task_file else [])
            bindings = ["train.checkpoint_every = 0", "train.log_every = 100"]
            steps = args.image_steps or task_steps
            bindings += [f"train.steps = {steps}", f"train.eval_every = {steps}"]
            runs.append((task_name, name, files, bindings, os.path.join(workdir, "images", task_name.split()[0], name)))
    if not args.from_logs:
        train_in_parallel([(files, bindings, run_dir) for _, _, files, bindings, run_dir in runs], args.jobs)
    rows = []
    for task_name, name, files, bindings, run_dir in runs:
        if args.from_logs and not os.path.exists(os.path.join(run_dir, "cpu_seconds.json")):
            print(f"{task_name} {name}: no finished run in {run_dir}, left out (--from-logs trains nothing)")
            continue
        result, seconds = train_once(files, bindings, run_dir)
        metrics = final_eval(result)
        model = result.model.eval()
        batch = next(iter(_task_for(files, bindings).batches("eval", Shard(batch_size=64))))
        with torch.no_grad():
            flops = measured_flops(lambda: model(batch["image"])) / len(batch["image"])
            output = model(batch["image"])
        layers = float(output["ponder"].mean()) if isinstance(output, dict) and "ponder" in output \
            else float(len(model.stages))
        rows.append({"task": task_name, "model": name, "steps": result.step, "accuracy": metrics.get("accuracy"),
                     "average layers": layers, "MFLOPs / image": flops / 1e6,
                     "CPU s": seconds})
        print(f"{task_name} {name}: accuracy {metrics.get('accuracy', float('nan')):.3f}, layers {layers:.2f}, "
              f"{flops / 1e6:.2f} MFLOPs", flush=True)
    return rows


def _task_for(files: Sequence[str], bindings: Sequence[str]):
    """The task the configuration builds (gin is re-parsed; only the task is constructed)."""
    from engine import config
    from launch.experiment import parsed_config
    with parsed_config(files, bindings):
        return config.built("train.task")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--steps", type=int, default=0, help="C-PVR steps per run (0: the gin files')")
    parser.add_argument("--image-steps", type=int, default=0,
                        help="image steps per run (0: 1,000 on digits, 600 on textured shapes)")
    parser.add_argument("--only", choices=["cpvr", "images"])
    parser.add_argument("--models", default="", help="comma-separated C-PVR model names (default: all six)")
    parser.add_argument("--bind", action="append", default=[],
                        help="extra gin binding for every C-PVR run, e.g. 'LENGTH = 24' (repeatable)")
    parser.add_argument("--image-tasks", default="", help="comma-separated: digits,textured (default: both)")
    parser.add_argument("--from-logs", action="store_true",
                        help="tables from the finished runs in --workdir (C-PVR: their logged evaluations); trains nothing")
    parser.add_argument("--jobs", type=int, default=1, help="train this many runs at once, one process each")
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "results", "hyperut"))
    parser.add_argument("--workdir", default=os.path.join(REPO_ROOT, "runs", "reproduce_hyperut"))
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    torch_threads()
    cpu_seconds = 0.0
    sections = []
    command = "python launch/reproduce.py hyperut " + " ".join(argv)
    if args.only != "images":
        rows, per_model = run_cpvr(args, args.workdir)
        cpu_seconds += sum(r["seconds"] for runs in per_model.values() for r in runs if r["seconds"] == r["seconds"])
        hops, train_hops = _hop_ranges(args.bind)
        columns = ["model", "acc. in range", "acc. out of range", "no-shortcut acc. in", "no-shortcut acc. out",
                   "ponder in", "ponder out", "steps", "CPU s / run"]
        sections += ["## C-PVR (mean ± std over seeds " + args.seeds + ")\n", markdown_table(rows, columns),
                     "\nAccuracy per hop count:\n", hop_table(per_model, "accuracy", hops),
                     "\nAccuracy per hop count on examples the shortcut gets wrong:\n",
                     hop_table(per_model, "accuracy_no_shortcut", hops),
                     "\nMean ponder steps per hop count:\n", hop_table(per_model, "ponder", hops)]
        with open(os.path.join(args.out, "cpvr_runs.json"), "w") as handle:
            json.dump(per_model, handle, indent=1)
        _plot_cpvr(per_model, hops, train_hops, os.path.join(args.out, "cpvr_hops.png"))
    if args.only != "cpvr":
        image_rows = run_images(args, args.workdir)
        cpu_seconds += sum(r["CPU s"] for r in image_rows)
        sections += ["\n## Images (one seed)\n",
                     markdown_table(image_rows, ["task", "model", "steps", "accuracy", "average layers", "MFLOPs / image", "CPU s"])]
        _plot_images(image_rows, os.path.join(args.out, "images.png"))
    text = (f"# Hyper-UT reproduction\n\nCommand: `{command.strip()}`. Budget: {cpu_seconds / 60:.1f} CPU minutes "
            f"of training and evaluation on one thread (process CPU time, which a busy machine does not "
            f"inflate as it does wall-clock).\n\n" + "\n".join(sections))
    with open(os.path.join(args.out, "table.md"), "w") as handle:
        handle.write(text)
    print(text)
    return 0


def torch_threads() -> None:
    """One thread, as the CPU figures in the table assume (and the machine is shared)."""
    import torch
    torch.set_num_threads(1)


def _hop_ranges(bindings: Sequence[str]) -> tuple[range, range]:
    """The evaluated and the trained hop counts of the flagship's config with `bindings`."""
    import gin

    from launch.experiment import parsed_config
    with parsed_config(["gin/hyperut/hyperut_pvr.gin"], bindings):
        (lo, hi), (train_lo, train_hi) = gin.query_parameter("CPVR.eval_hops"), gin.query_parameter("CPVR.train_hops")
        return range(lo, hi + 1), range(train_lo, train_hi + 1)


def _plot_cpvr(per_model: dict[str, list[dict]], hops: range, train_hops: range, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for index, (name, runs) in enumerate(per_model.items()):
        for axis, prefix in zip(axes, ("accuracy", "accuracy_no_shortcut", "ponder")):
            values = [statistics.mean([r.get(f"{prefix}/hops_{k}", float("nan")) for r in runs]) for k in hops]
            if all(v != v for v in values):
                continue
            axis.plot(list(hops), values, marker="o", label=name, color=f"C{index}")  # same colour in every panel
    for axis, title in zip(axes, ("accuracy", "accuracy where the shortcut fails", "mean ponder steps")):
        axis.axvspan(train_hops.start - 0.5, train_hops.stop - 0.5, alpha=0.12, color="gray")
        axis.set_xlabel("hops (shaded: training range)")
        axis.set_title(title)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_images(rows: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.6))
    for row in rows:
        marker = "o" if row["task"].startswith("digits") else "s"
        axis.scatter(row["average layers"], row["accuracy"], marker=marker)
        axis.annotate(f"{row['model']} ({row['task'].split()[0]})", (row["average layers"], row["accuracy"]),
                      fontsize=7, xytext=(3, 3), textcoords="offset points")
    axis.set_xlabel("average layers used per image")
    axis.set_ylabel("eval accuracy")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
