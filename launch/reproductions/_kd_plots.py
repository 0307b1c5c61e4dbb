"""Plots for the distillation reproduction (launch/reproductions/kd.py): accuracy per test set,
accuracy by attractor count, and per-layer CKA with the model whose bias is being transferred.
"""
from __future__ import annotations

import os
import re
import statistics
from typing import Any

import numpy as np

from tasks.common.similarity import cka_figure, cka_matrix


def _stats(results: dict, name: str, split: str, metric: str) -> tuple[float, float]:
    xs = [s[split][metric] for s in results[name].values() if metric in s.get(split, {})]
    if not xs:
        return float("nan"), 0.0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def digits_accuracy(results: dict, path: str) -> None:
    from matplotlib import pyplot as plt
    names = list(results)
    splits = ("eval", "translated", "scaled")
    width = 0.8 / len(names)
    figure, axis = plt.subplots(figsize=(7.5, 3.8))
    for i, name in enumerate(names):
        stats = [_stats(results, name, split, "accuracy") for split in splits]
        axis.bar(np.arange(len(splits)) + i * width, [m for m, _ in stats], width, yerr=[s for _, s in stats],
                 label=name, capsize=2)
    axis.set_xticks(np.arange(len(splits)) + width * (len(names) - 1) / 2, splits)
    axis.set_ylabel("accuracy")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7, ncol=len(names), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    axis.set_title("digits on a canvas: accuracy per test set", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def agreement_by_attractors(results: dict, path: str) -> None:
    from matplotlib import pyplot as plt
    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    for name in results:
        keys = sorted({k for s in results[name].values() for k in s["eval"] if re.match(r"accuracy/attractors_\d+$", k)},
                      key=lambda k: int(k.rsplit("_", 1)[1]))
        levels = [int(k.rsplit("_", 1)[1]) for k in keys]
        stats = [_stats(results, name, "eval", k) for k in keys]
        axis.errorbar(levels, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=2, label=name)
    axis.axvspan(-0.5, 1.5, alpha=0.12, color="gray", label="training range")
    axis.set_xlabel("attractors")
    axis.set_ylabel("accuracy")
    axis.legend(fontsize=7)
    axis.set_title("subject-verb agreement by attractor count", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def cka_layers(results: dict, path: str, reference: str) -> None:
    """One heatmap per model: mean CKA of its layers with the reference model's layers."""
    from matplotlib import pyplot as plt
    for name, per_seed in results.items():
        found = [cka_matrix(s["similarity"]) for s in per_seed.values() if "similarity" in s]
        if not found:
            continue
        matrix = np.mean([f[0] for f in found], axis=0)
        figure = cka_figure(matrix, found[0][1], found[0][2], title=f"{name} vs {reference}")
        axis = figure.axes[0]
        axis.set_xlabel(f"{reference} layer")
        axis.set_ylabel(f"{name} layer")
        figure.savefig(path.format(name=name.lower().replace(" <- ", "_from_").replace(" ", "_")), dpi=110)
        plt.close(figure)


def write_plots(results: dict[str, Any], out: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    if "digits" in results:
        digits_accuracy(results["digits"], os.path.join(out, "digits_accuracy.png"))
        cka_layers({k: v for k, v in results["digits"].items() if k in ("MLP", "MLP <- CNN")},
                   os.path.join(out, "cka_digits_{name}.png"), "CNN")
    if "agreement" in results:
        agreement_by_attractors(results["agreement"], os.path.join(out, "agreement_by_attractors.png"))
        cka_layers({k: v for k, v in results["agreement"].items() if k in ("Transformer", "Transformer <- LSTM")},
                   os.path.join(out, "cka_agreement_{name}.png"), "LSTM")
