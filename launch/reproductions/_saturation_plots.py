"""Plots of the saturation study (matplotlib, Agg), one panel per downstream task:
<budget>_saturation.png (every run, each arm's mean with its 95% CIs, the hull of the arm means and
Eq. 1 fitted on it) and <budget>_layers.png (accuracy against relative depth, mean over seeds)."""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from launch import seed_statistics as statistics
from launch.reproductions._saturation_analysis import hull_fit, per_seed


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _panels(plt, count: int):
    """One panel per task on a grid of three columns, and a spare panel for the legend."""
    rows = (count + 1 + 2) // 3
    figure, grid = plt.subplots(rows, 3, figsize=(13.5, 4.0 * rows))
    grid = list(np.atleast_1d(grid).ravel())
    for spare in grid[count + 1:]:
        spare.axis("off")
    grid[count].axis("off")
    return figure, grid[:count], grid[count]


def _mean_ci(values: list[float]) -> tuple[float, float]:
    """The mean and the half-width of its 95% t interval (0 for one value)."""
    summary = statistics.summarize(values)
    return summary.mean, 0.0 if summary.high is None else summary.high - summary.mean


def draw(results: Mapping[str, Any], folder: str, *, tasks: Mapping[str, tuple[str, int]], shots: int) -> list[str]:
    """Both figures of one results file; returns their paths."""
    budget = results["budget"]["name"]
    paths = [os.path.join(folder, f"{budget}_saturation.png"), os.path.join(folder, f"{budget}_layers.png")]
    frontier(results, paths[0], tasks, shots)
    layers(results, paths[1], tasks, shots)
    return paths


def frontier(results: Mapping[str, Any], path: str, tasks: Mapping[str, tuple[str, int]], shots: int) -> None:
    plt = _pyplot()
    figure, axes, legend = _panels(plt, len(tasks))
    for axis, (task, (distance, classes)) in zip(axes, tasks.items()):
        means = []
        for index, arm in enumerate(results["arms"]):
            us = per_seed(results, arm["name"], "accuracy")
            ds = per_seed(results, arm["name"], f"fewshot/{task}/{shots}shot")
            seeds = sorted(set(us) & set(ds))
            colour = f"C{index % 10}"
            axis.scatter([us[s] for s in seeds], [ds[s] for s in seeds], color=colour, s=8, alpha=0.35)
            (mx, ex), (my, ey) = _mean_ci([us[s] for s in seeds]), _mean_ci([ds[s] for s in seeds])
            axis.errorbar(mx, my, xerr=ex, yerr=ey, color=colour, marker="o", markersize=5, capsize=2,
                          label=arm["label"])
            means.append((mx, my))
        mx, my = (np.array(v) for v in zip(*means))
        fitted = hull_fit(mx, my)
        axis.plot(mx[fitted["hull"]], my[fitted["hull"]], color="black", linestyle="--", linewidth=1,
                  label="hull of arm means")
        if fitted["fit"] is not None:
            fit, grid = fitted["fit"], np.linspace(0.0, 1.0, 101)
            note = " (degenerate)" if fitted["degenerate"] else ""
            axis.plot(grid, 1 - fit(np.clip(1 - grid, 1e-9, 1)), color="crimson", linewidth=1.2,
                      linestyle=":" if note else "-", label="Eq. 1 on the hull (dotted: degenerate)")
        axis.axhline(1 / classes, color="grey", linewidth=0.6, linestyle=":")
        axis.set_xlim(0, 1)
        axis.set_title(f"{task} ({distance})", fontsize=10)
        axis.set_xlabel("upstream accuracy (384 classes)")
        axis.set_ylabel(f"{shots}-shot accuracy")
        if fitted["fit"] is not None:
            fit = fitted["fit"]
            axis.text(0.02, 0.98, f"Eq. 1 on the hull of means{' (degenerate)' if fitted['degenerate'] else ''}:\n"
                      f"k={fit.k:.2f}, alpha={fit.alpha:.2f}, 1-e_IR={fit.saturation:.2f}",
                      transform=axis.transAxes, fontsize=7, va="top")
    legend.legend(*axes[0].get_legend_handles_labels(), loc="center", fontsize=8)
    _save(figure, path, plt, f"{results['title']} (budget {results['budget']['name']}, "
                             f"{len(results['budget']['seeds'])} seeds; bars: 95% CI over seeds)")


def layers(results: Mapping[str, Any], path: str, tasks: Mapping[str, tuple[str, int]], shots: int) -> None:
    """Per arm, accuracy at layer k / L (the last layer is the pre-logits), mean over seeds."""
    plt = _pyplot()
    figure, axes, legend = _panels(plt, len(tasks))
    prefix = f"{results['report_split']}/fewshot"
    for axis, (task, (distance, classes)) in zip(axes, tasks.items()):
        for index, arm in enumerate(results["arms"]):
            runs = arm["runs"]
            depth = sorted(int(k.rsplit("_", 1)[1]) for k in runs[0]["metrics"]
                           if k.startswith(f"{prefix}/{task}/{shots}shot/layer_"))
            if not depth:
                continue
            stats = [_mean_ci([r["metrics"][f"{prefix}/{task}/{shots}shot/layer_{k}"] for r in runs]) for k in depth]
            x = np.array(depth) / depth[-1]
            y, e = (np.array(v) for v in zip(*stats))
            axis.plot(x, y, marker="o", color=f"C{index % 10}", label=arm["label"], linewidth=1)
            axis.fill_between(x, y - e, y + e, color=f"C{index % 10}", alpha=0.12)
        axis.axhline(1 / classes, color="grey", linewidth=0.6, linestyle=":")
        axis.set_title(f"{task} ({distance})", fontsize=10)
        axis.set_xlabel("relative depth of the probed layer (1 = last)")
        axis.set_ylabel(f"{shots}-shot accuracy")
    legend.legend(*axes[0].get_legend_handles_labels(), loc="center", fontsize=8)
    _save(figure, path, plt, f"Accuracy by layer (budget {results['budget']['name']}; bands: 95% CI over seeds)")


def _save(figure, path: str, plt, title: str) -> None:
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
