"""Long Range Arena (Tay et al. 2021) at CPU scale: every attention found in gin/lra/attention/
on the chosen tasks, written to results/lra/table.md beside the paper's Table 1.

    python launch/reproduce.py lra --tasks listops,pathfinder --budget small
    python launch/reproduce.py lra --tasks listops --attentions dense,performer --budget full

Each (task, attention) run is `gin/lra/<task>[_small].gin` + `gin/lra/attention/<name>.gin`
('dense' needs no attention file: it is MultiHeadAttention's default). Attentions are
discovered when the script runs. A run that fails is reported in the table, not fatal.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shlex
import time
import traceback
from typing import Any

from engine.config import REPO_ROOT
from launch.experiment import markdown_table, run_config

TASKS = {  # task file stem -> the paper's column
    "listops": "ListOps", "text": "Text", "retrieval": "Retrieval", "image": "Image",
    "pathfinder": "Path", "pathx": "Path-X",
}
PAPER_NAMES = {  # attention file stem -> the paper's row
    "dense": "Transformer", "local": "Local Attention", "sparse": "Sparse Trans.", "longformer": "Longformer",
    "linformer": "Linformer", "reformer": "Reformer", "sinkhorn": "Sinkhorn Trans.",
    "synthesizer": "Synthesizer", "bigbird": "BigBird", "linear": "Linear Trans.", "performer": "Performer",
}
# Table 1 of the paper (test accuracy, %); Path-X: every model FAILed (about 50%).
PAPER = {
    "Transformer": (36.37, 64.27, 57.46, 42.44, 71.40),
    "Local Attention": (15.82, 52.98, 53.39, 41.46, 66.63),
    "Sparse Trans.": (17.07, 63.58, 59.59, 44.24, 71.71),
    "Longformer": (35.63, 62.85, 56.89, 42.22, 69.71),
    "Linformer": (35.70, 53.94, 52.27, 38.56, 76.34),
    "Reformer": (37.27, 56.10, 53.40, 38.07, 68.50),
    "Sinkhorn Trans.": (33.67, 61.20, 53.83, 41.23, 67.45),
    "Synthesizer": (36.99, 61.68, 54.67, 41.61, 69.45),
    "BigBird": (36.05, 64.02, 59.29, 40.83, 74.87),
    "Linear Trans.": (16.13, 65.90, 53.09, 42.34, 75.30),
    "Performer": (18.01, 65.40, 53.82, 42.77, 77.05),
}
PAPER_COLUMNS = ("ListOps", "Text", "Retrieval", "Image", "Path")

#: Budgets: which task files and what to rebind. 'tiny' only checks that the pipeline runs.
BUDGETS: dict[str, dict[str, Any]] = {
    "full": {"suffix": "", "bindings": []},
    "small": {"suffix": "_small", "bindings": []},
    "tiny": {"suffix": "_small", "bindings": [
        "train.steps = 4", "train.batch_size = 8", "train.eval_every = 4", "train.log_every = 2",
        "train.checkpoint_every = 0",
        "TransformerClassifier.d_model = 16", "TransformerClassifier.num_layers = 1",
        "TransformerClassifier.num_heads = 2", "MultiHeadAttention.head_dim = 8",
        "TransformerClassifier.d_ff = 16", "TransformerClassifier.head_hidden = (16,)",
        "LRAListOps.min_length = 10", "LRAListOps.num_train = 64", "LRAListOps.num_eval = 16",
        "LRAListOps.num_test = 16",
        "LRAPathfinder.num_train = 32", "LRAPathfinder.num_eval = 8", "LRAPathfinder.num_test = 8",
        "LRAText.num_train = 32", "LRAText.num_eval = 8", "LRAText.num_test = 8",
        "LRARetrieval.num_train = 32", "LRARetrieval.num_eval = 8", "LRARetrieval.num_test = 8",
    ]},
}


def discover_attentions(folder: str) -> list[str]:
    """The attention file stems in `folder`, with 'dense' first (added when it has no file)."""
    names = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(folder, "*.gin")))
    return ["dense"] + [n for n in names if n != "dense"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="reproduce.py lra", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="listops,pathfinder", help=f"comma-separated, from {sorted(TASKS)}")
    parser.add_argument("--budget", default="small", choices=sorted(BUDGETS))
    parser.add_argument("--attentions", default="", help="comma-separated subset (default: all discovered)")
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "results", "lra"), help="where table.md goes")
    parser.add_argument("--runs", default=None, help="run directories (default: runs/lra-<budget>)")
    parser.add_argument("--cache", default=None, help="cache folder for generated data (default ~/.cache/gintrain)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bind", action="append", default=[],
                        help="extra gin binding for every run, e.g. 'train.steps = 800' (repeatable)")
    return parser.parse_args(argv)


def _steps_per_second(workdir: str) -> float | None:
    from engine.logging import read_metrics
    times = [r["step_time_s"] for r in read_metrics(workdir) if r["split"] == "train" and "step_time_s" in r]
    return 1.0 / (sum(times) / len(times)) if times else None


def run_one(task: str, attention: str, args: argparse.Namespace, attention_dir: str) -> dict[str, Any]:
    """Train one (task, attention) pair; returns its accuracies or the error it raised."""
    budget = BUDGETS[args.budget]
    files = [os.path.join(REPO_ROOT, "gin", "lra", f"{task}{budget['suffix']}.gin")]
    attention_file = os.path.join(attention_dir, f"{attention}.gin")
    if os.path.isfile(attention_file):
        files.append(attention_file)
    bindings = list(budget["bindings"]) + [f"train.seed = {args.seed}"] + list(args.bind)
    if args.cache:
        bindings += [f"LRAListOps.cache = '{args.cache}'", f"LRAPathfinder.cache = '{args.cache}'"]
    workdir = os.path.join(args.runs or os.path.join(REPO_ROOT, "runs", f"lra-{args.budget}"), f"{task}-{attention}")
    row: dict[str, Any] = {"task": task, "attention": attention, "workdir": workdir}
    started = time.perf_counter()
    try:
        result = run_config(files, bindings, workdir)
    except Exception as error:  # noqa: BLE001 - one broken pair must not lose the others
        row["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        traceback.print_exc()
        return row
    row["seconds"] = time.perf_counter() - started
    for split in ("eval", "test"):
        accuracy = result.metrics.get(split, {}).get("accuracy")
        row[f"{split}_accuracy"] = None if accuracy is None else 100.0 * float(accuracy)
    row["steps_per_s"] = _steps_per_second(workdir)
    return row


def build_table(rows: list[dict[str, Any]], tasks: list[str], attentions: list[str]) -> str:
    """One line per attention: our test accuracy and the paper's, per task."""
    by_pair = {(r["task"], r["attention"]): r for r in rows}
    columns = ["attention"]
    for task in tasks:
        columns += [f"{TASKS[task]} (ours)", f"{TASKS[task]} (paper)"]
    columns += [f"{TASKS[task]} steps/s" for task in tasks]
    lines = []
    for attention in attentions:
        paper_row = PAPER.get(PAPER_NAMES.get(attention, ""), None)
        line: dict[str, Any] = {"attention": attention}
        for task in tasks:
            row = by_pair.get((task, attention), {})
            ours = row.get("test_accuracy")
            line[f"{TASKS[task]} (ours)"] = "error" if "error" in row else (f"{ours:.1f}" if ours is not None else "")
            column = TASKS[task]
            if column == "Path-X":
                line[f"{column} (paper)"] = "FAIL" if paper_row else ""
            elif paper_row:
                line[f"{column} (paper)"] = f"{paper_row[PAPER_COLUMNS.index(column)]:.2f}"
            speed = row.get("steps_per_s")
            line[f"{column} steps/s"] = f"{speed:.2f}" if speed else ""
        lines.append(line)
    table = markdown_table(lines, columns)
    errors = [f"- {r['task']} / {r['attention']}: {r['error']}" for r in rows if "error" in r]
    return table + ("\nErrors:\n" + "\n".join(errors) + "\n" if errors else "")


def plot(rows: list[dict[str, Any]], tasks: list[str], attentions: list[str], path: str) -> None:
    """Grouped bars per task: our test accuracy next to the paper's, per attention."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    by_pair = {(r["task"], r["attention"]): r for r in rows}
    figure, axes = plt.subplots(1, len(tasks), figsize=(max(4.0, 0.6 * len(attentions) + 1.5) * len(tasks), 3.6),
                                squeeze=False)
    positions = list(range(len(attentions)))
    for axis, task in zip(axes[0], tasks):
        ours = [by_pair.get((task, a), {}).get("test_accuracy") or 0.0 for a in attentions]
        column = TASKS[task]
        paper = [PAPER[PAPER_NAMES[a]][PAPER_COLUMNS.index(column)]
                 if a in PAPER_NAMES and column in PAPER_COLUMNS else 0.0 for a in attentions]
        axis.bar([p - 0.2 for p in positions], ours, width=0.4, label="ours (this budget)")
        axis.bar([p + 0.2 for p in positions], paper, width=0.4, label="paper (full budget)", alpha=0.6)
        axis.set_xticks(positions, attentions, rotation=45, ha="right")
        axis.set_ylabel("test accuracy (%)")
        axis.set_title(column)
    axes[0][0].legend(loc="lower left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        print(f"unknown task(s) {unknown}; choose from {sorted(TASKS)}")
        return 2
    attention_dir = os.path.join(REPO_ROOT, "gin", "lra", "attention")
    found = discover_attentions(attention_dir)
    attentions = [a.strip() for a in args.attentions.split(",") if a.strip()] or found
    missing = [a for a in attentions if a not in found]
    if missing:
        print(f"no attention file for {missing} in {attention_dir}; found {found}")
        return 2
    rows = []
    for task in tasks:
        for attention in attentions:
            print(f"=== {task} / {attention} ({args.budget})", flush=True)
            rows.append(run_one(task, attention, args, attention_dir))
    os.makedirs(args.out, exist_ok=True)
    command = "python launch/reproduce.py lra " + shlex.join(argv)
    header = (f"# Long Range Arena, budget '{args.budget}'\n\n"
              f"Command: `{command}`\n\n"
              "Test accuracy (%) of each attention on each task, beside the paper's Table 1 "
              "(full-size tasks and budgets; Path-X: every model failed). Budgets other than 'full' "
              "train smaller models on shorter sequences (gin/lra/*_small.gin), so compare "
              "attentions within a column, not with the paper's numbers. steps/s: training "
              "throughput on this machine.\n\n")
    with open(os.path.join(args.out, "table.md"), "w") as handle:
        handle.write(header + build_table(rows, tasks, attentions))
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump({"command": command, "budget": args.budget, "rows": rows}, handle, indent=1)
    plot(rows, tasks, attentions, os.path.join(args.out, "accuracy.png"))
    print(open(os.path.join(args.out, "table.md")).read())
    return 1 if any("error" in r for r in rows) else 0
