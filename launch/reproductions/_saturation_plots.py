"""Plots of the saturation reproduction: downstream vs upstream accuracy with the upper hull and
the fitted saturation curve, and few-shot accuracy against relative depth (matplotlib, Agg)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from launch.reproductions._saturation_fits import SaturationFit

FAMILY_COLOURS = {"vit": "tab:blue", "mixer": "tab:orange", "resnet": "tab:green"}
SIZE_MARKERS = {"tiny": "o", "small": "s"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def saturation_plot(path: str, runs: Sequence[dict], ds: Sequence[float], hull: Sequence[int],
                    fit: SaturationFit | None, title: str, default_head_wd: float) -> None:
    """One point per run (colour: family, marker: size, hollow: the smaller data fraction,
    cross: a raised head weight decay), the hull, the fit of Eq. 1 on it, and its saturation line."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 4.6))
    largest = max(r["fraction"] for r in runs)
    for run, value in zip(runs, ds):
        colour, marker = FAMILY_COLOURS.get(run["family"], "grey"), SIZE_MARKERS.get(run["size"], "^")
        if run["head_wd"] != default_head_wd:
            axis.scatter(run["us"], value, color=colour, marker="x", s=40)
        else:
            axis.scatter(run["us"], value, s=30, marker=marker, edgecolors=colour,
                         facecolors=colour if run["fraction"] == largest else "none")
    us = np.array([r["us"] for r in runs])
    order = list(hull)
    axis.plot(us[order], np.asarray(ds)[order], color="black", linewidth=1, linestyle="--", label="upper hull")
    if fit is not None:
        grid = np.linspace(0.0, 1.0, 101)
        axis.plot(grid, 1 - fit(np.clip(1 - grid, 1e-9, 1)), color="crimson", linewidth=1.5,
                  label=f"fit: k={fit.k:.2f}, alpha={fit.alpha:.2f}, e_IR={fit.e_ir:.2f}")
        axis.axhline(fit.saturation, color="crimson", linewidth=0.8, linestyle=":",
                     label=f"saturation 1 - e_IR = {fit.saturation:.2f}")
    for family, colour in FAMILY_COLOURS.items():
        axis.scatter([], [], color=colour, label=family)
    axis.scatter([], [], color="grey", marker="x", label="raised head weight decay")
    axis.scatter([], [], facecolors="none", edgecolors="grey", label=f"data fraction < {largest:g}")
    axis.set_xlim(0, 1)
    axis.set_xlabel("upstream accuracy (384 classes, held-out)")
    axis.set_ylabel("downstream few-shot accuracy")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=7, loc="lower right")
    _save(figure, path, plt)


def layer_plot(path: str, curves: dict[str, list[tuple[float, float]]], title: str, chance: float | None) -> None:
    """Few-shot accuracy against depth (layer / number of layers), one line per model."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.6, 4.0))
    for label, points in curves.items():
        family = label.split("_")[0]
        xs, ys = zip(*points)
        axis.plot(xs, ys, marker="o", color=FAMILY_COLOURS.get(family, "grey"),
                  linestyle="-" if "small" in label else "--", label=label)
    if chance is not None:
        axis.axhline(chance, color="grey", linewidth=0.8, linestyle=":", label="chance")
    axis.set_xlabel("relative depth of the probed layer (layer / layers)")
    axis.set_ylabel("few-shot accuracy")
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=7)
    _save(figure, path, plt)


def _save(figure, path: str, plt) -> None:
    figure.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
