"""What the two scaling studies (scaling_archs, deepnarrow) share: the CPU test bed, the cost of a
run (parameters, FLOPs) read under its parsed configuration, seed-wise power-law fits and matched-
compute interpolation, a log-log plot, and the derived-analysis record that README/docs render."""
from __future__ import annotations

import contextlib
import math
import os
import shlex
from typing import Any, Iterable, Mapping, Sequence

from engine.analysis import PowerLaw, power_law_fit
from launch import seed_statistics as statistics

LENGTH = 32  # words per document: the CPU-scale inputs of both studies
# The test bed. On the gin file's corpus (64 words, 8 topics) every CPU shape sat on one plateau:
# after 800 steps d_model 16 and 64 differed by 3% in excess loss (1.40 vs 1.35 nats), and a 3x
# larger learning rate moved neither (measured), so slopes and rankings were set by noise around
# that plateau. With 32 words and 4 topics the same runs separate: excess 1.23 (d16) vs 0.93 (d64)
# after 600 steps, so size shows in the loss.
CORPUS = ("TopicMarkovSource.num_words = 32", "TopicMarkovSource.num_topics = 4")
EVAL_SPLITS = "train.eval_splits = ['eval', 'validation']"  # validation selects, eval reports


def span_bindings(steps: int, eval_batches: int) -> tuple[str, ...]:
    """Span-corruption pre-training on the test bed: `steps` x batch 16, evaluated once at the end."""
    return (*CORPUS, f"train.steps = {steps}", "train.batch_size = 16", f"train.eval_every = {steps}",
            f"train.checkpoint_every = {steps}", "train.log_every = 100", f"SpanCorruption.length = {LENGTH}",
            f"SpanCorruption.eval_batches = {eval_batches}", f"T5.max_input_length = {LENGTH + 1}",
            f"WarmupCosine.warmup_steps = {max(steps // 10, 1)}", EVAL_SPLITS)


def run_cost(scope: str | None = None) -> dict[str, float]:
    """Parameters, non-embedding parameters and training FLOPs of the configured run (in a stage's
    gin scope): the FLOP counter's forward pass on one example of the task, x3 for the backward,
    x steps x batch. Call under the run's parsed configuration."""
    import gin
    import torch

    from engine import analysis
    from engine.program import configured_steps
    from launch.sweep import _model_and_task
    model, task = _model_and_task(scope)
    model.eval()
    with torch.no_grad():
        forward = analysis.measured_flops(lambda: task.loss(model, task.example_batch(1))) // 2  # 2 FLOPs per MAC
    parameters = analysis.count_parameters(model)
    table = getattr(getattr(model, "embedding", None), "table", None)
    with gin.config_scope(scope) if scope else contextlib.nullcontext():
        batch = gin.query_parameter("train.batch_size")
    return {"parameters": parameters,
            "non_embedding_parameters": parameters - (table.weight.numel() if table is not None else 0),
            "forward_flops_per_example": forward, "train_flops": 3 * forward * configured_steps(scope) * batch}


# --- fits and matched compute over seeds ----------------------------------------------------------

def seed_fits(points: Mapping[int, Sequence[tuple[float, float]]]) -> dict[int, PowerLaw]:
    """One log-log fit per seed of that seed's (x, y) points (>= 2 points)."""
    return {seed: power_law_fit(*zip(*sorted(pairs))) for seed, pairs in points.items() if len(pairs) >= 2}


def loglog_interpolate(pairs: Sequence[tuple[float, float]], x: float) -> float | None:
    """y at `x` on the piecewise-linear log-log curve through `pairs`; None outside their x range
    (never extrapolated: a matched-compute comparison reads measured runs only)."""
    pairs = sorted(pairs)
    for (x0, y0), (x1, y1) in zip(pairs, pairs[1:]):
        if x0 <= x <= x1:
            if x1 == x0:
                return y0
            t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return math.exp(math.log(y0) + t * (math.log(y1) - math.log(y0)))
    return None


def log_grid(low: float, high: float, per_decade: int = 4) -> list[float]:
    """The fixed compute grid 10^(k / per_decade) inside [low, high]: the same points whichever
    architectures are present, so adding one cannot move another's bucket."""
    first, last = math.ceil(per_decade * math.log10(low)), math.floor(per_decade * math.log10(high))
    return [10 ** (k / per_decade) for k in range(first, last + 1)]


def interval_text(values: Sequence[float], spec: str = ".3f") -> str:
    """'mean [low, high]' over seeds (the 95% t interval of launch/seed_statistics.py)."""
    summary = statistics.summarize(list(values))
    if summary.low is None:
        return format(summary.mean, spec)
    return f"{summary.mean:{spec}} [{summary.low:{spec}}, {summary.high:{spec}}]"


# --- plots ------------------------------------------------------------------------------------

def loglog_plot(path: str, series: dict[str, list[tuple[float, float]]], fits: dict[str, PowerLaw] | None,
                xlabel: str, ylabel: str, title: str, front: Iterable[tuple[float, float]] = (),
                errors: dict[str, list[tuple[float, float, float]]] | None = None) -> None:
    """Points per series (with optional (x, low, high) error bars), their fitted lines, and an
    optional Pareto front, on log-log axes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FormatStrFormatter
    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    for index, (name, pairs) in enumerate(sorted(series.items())):
        colour = plt.cm.tab20(index % 20)
        xs, ys = zip(*sorted(pairs))
        label = name if not fits or name not in fits else f"{name} (alpha {fits[name].alpha:+.3f})"
        axis.scatter(xs, ys, color=colour, s=18, label=label)
        for x, low, high in (errors or {}).get(name, []):
            axis.plot([x, x], [low, high], color=colour, linewidth=1)
        if fits and name in fits:
            grid = np.geomspace(min(xs), max(xs), 20)
            axis.plot(grid, fits[name](grid), color=colour, linewidth=1)
    front = sorted(front)
    if front:
        axis.plot(*zip(*front), color="black", linestyle="--", linewidth=1, marker="x", markersize=9,
                  label="Pareto front")
    axis.set_xscale("log")
    axis.set_yscale("log")
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


# --- the derived-analysis record ------------------------------------------------------------------

def command_line(name: str, argv: Sequence[str]) -> str:
    return shlex.join(["python", "launch/reproduce.py", name, *argv])
