"""How far can a model get on C-PVR without following the pointer chain? A shortcut study.

    python launch/reproduce.py cpvr_shortcuts [--examples 4000]

The rule "answer the value at the right-most position that an earlier position points to and
that does not itself point forward" needs two attention steps, whatever the hop count, and gets
better with more hops: the chain's end p_M moves right and fewer filler positions remain to act
as decoys. On short sequences it solves most long chains, so accuracy can *rise* with hops and
an in- vs out-of-range comparison measures the shortcut, not generalisation. This script
tabulates the rule's accuracy per (length, hops) to pick a length where that does not happen.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from engine.config import REPO_ROOT
from launch.experiment import markdown_table
from tasks.pvr.vector import cpvr_examples, shortcut_answers


def majority_accuracy(labels: np.ndarray, length: int) -> float:
    """Accuracy of always answering the most frequent label (labels skew small: y <= p_M)."""
    return float(np.bincount(labels, minlength=length).max() / len(labels))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=4000, help="examples per (length, hops) cell")
    parser.add_argument("--lengths", default="16,24,32,48,64")
    parser.add_argument("--hops", default="1,2,3,4,5,6,7,8")
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "results", "cpvr_shortcuts"))
    args = parser.parse_args(argv)
    lengths = [int(v) for v in args.lengths.split(",")]
    hop_counts = [int(v) for v in args.hops.split(",")]
    rng = np.random.default_rng(0)
    rows, curves = [], {}
    for length in lengths:
        shortcut_row = {"length": length, "answer": "shortcut"}
        majority_row = {"length": length, "answer": "majority label"}
        curves[length] = []
        for hops in hop_counts:
            if hops >= length:
                continue
            examples = cpvr_examples(rng, np.full(args.examples, hops), length)
            accuracy = float((shortcut_answers(examples["tokens"]) == examples["label"]).mean())
            shortcut_row[f"hops {hops}"] = accuracy
            majority_row[f"hops {hops}"] = majority_accuracy(examples["label"], length)
            curves[length].append((hops, accuracy))
        rows += [shortcut_row, majority_row]
    os.makedirs(args.out, exist_ok=True)
    columns = ["length", "answer"] + [f"hops {h}" for h in hop_counts]
    table = markdown_table(rows, columns, floatfmt=".2f")
    header = (f"C-PVR accuracy of answers that do not follow the chain ({args.examples} examples per cell; "
              f"command: `python launch/reproduce.py cpvr_shortcuts`)\n\n")
    with open(os.path.join(args.out, "table.md"), "w") as handle:
        handle.write(header + table)
    _plot(curves, os.path.join(args.out, "shortcut_vs_hops.png"))
    print(header + table)
    return 0


def _plot(curves: dict[int, list[tuple[int, float]]], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    figure, axis = plt.subplots(figsize=(4.5, 3.2))
    for length, points in curves.items():
        axis.plot(*zip(*points), marker="o", label=f"L = {length}")
    axis.set_xlabel("hops")
    axis.set_ylabel("shortcut accuracy")
    axis.set_title("C-PVR without following the chain")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
