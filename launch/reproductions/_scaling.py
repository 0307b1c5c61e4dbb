"""Helpers shared by the scaling reproductions: run a sweep in-process, fit per-group power
laws, and draw log-log plots (matplotlib with the Agg backend, imported lazily)."""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Sequence

from engine.analysis import PowerLaw, power_law_fit


def fit_groups(records: Sequence[dict], group: Callable[[dict], str], x: Callable[[dict], float],
               y: Callable[[dict], float]) -> dict[str, PowerLaw]:
    """One log-log fit of y on x per group (groups with fewer than two points are left out)."""
    points: dict[str, list[tuple[float, float]]] = {}
    for record in records:
        points.setdefault(group(record), []).append((x(record), y(record)))
    return {name: power_law_fit(*zip(*pairs)) for name, pairs in points.items() if len(pairs) >= 2}


def loglog_plot(path: str, series: dict[str, list[tuple[float, float]]], fits: dict[str, PowerLaw] | None,
                xlabel: str, ylabel: str, title: str, front: Iterable[tuple[float, float]] = ()) -> None:
    """Points per series, their fitted lines, and an optional Pareto front, on log-log axes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for index, (name, pairs) in enumerate(sorted(series.items())):
        colour = plt.cm.tab20(index % 20)
        xs, ys = zip(*sorted(pairs))
        label = name if not fits or name not in fits else f"{name} (alpha {fits[name].alpha:+.3f})"
        axis.scatter(xs, ys, color=colour, s=18, label=label)
        if fits and name in fits:
            grid = np.geomspace(min(xs), max(xs), 20)
            axis.plot(grid, fits[name](grid), color=colour, linewidth=1)
    front = sorted(front)
    if front:
        axis.plot(*zip(*front), color="black", linestyle="--", linewidth=1, marker="x", markersize=9,
                  label="Pareto front")
    axis.set_xscale("log")
    axis.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter
    for formatter in (axis.yaxis.set_major_formatter, axis.yaxis.set_minor_formatter):
        formatter(FormatStrFormatter("%.3g"))  # plain numbers: the y range is narrow
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def fmt(value: Any, spec: str = ".3f") -> str:
    return "" if value is None else format(value, spec)


def training_minutes(records: Sequence[dict]) -> float:
    """Minutes the training loops of these runs took (every stage; evaluation and start-up
    excluded), read back from their metrics.jsonl, so a regenerated report still knows it."""
    from engine.logging import read_metrics
    seconds = 0.0
    for record in records:
        for folder, _, files in os.walk(record["workdir"]):
            if "metrics.jsonl" not in files:
                continue
            previous = 0
            for row in read_metrics(folder):
                if row["split"] == "train" and "step_time_s" in row:
                    seconds += row["step_time_s"] * (row["step"] - previous)
                    previous = row["step"]
    return seconds / 60


def load_note() -> str:
    """The machine's load, since shared-CPU timings mean little without it."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.0f} / {five:.0f} / {fifteen:.0f} (1 / 5 / 15 min) on {os.cpu_count()} cores"
