"""Scaling Laws vs Model Architectures under the study protocol (docs/studies.md): each architecture
of gin/scaling/arch/ at five or more T5 widths and three or more seeds, pre-trained with span
corruption on the topic-Markov corpus; per architecture a power-law slope with its seed interval,
and a ranking by measured loss at fixed compute points.

    python launch/reproduce.py scaling_archs --budget cpu --jobs 1 --threads 1   # the committed results
    python launch/reproduce.py scaling_archs --budget smoke --archs vanilla,switch
    python launch/reproduce.py scaling_archs --budget gpu --jobs 16              # one GPU machine

Every (architecture, width) is an arm with the same steps, batch, data and learning rate (no arm
is tuned, so every arm gets the same tuning: none). The report is the eval split's excess loss
(cross-entropy above the corpus's exact Bayes floor); the validation split would select, and only
feeds the log. From results/scaling_archs/<budget>.json the command derives
results/scaling_archs/<budget>_analysis.json (the fits and rankings the pages render) and
<budget>_loss_vs_flops.png. Nothing is claimed: this is a description, with intervals.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Mapping, Sequence

from engine.config import REPO_ROOT
from launch import seed_statistics as statistics
from launch import study as protocol
from launch.benchmarks._record import load_average, table
from launch.reproductions._scaling import (command_line, interval_text, log_grid, loglog_interpolate, loglog_plot,
                                           run_cost, seed_fits, span_bindings)
from launch.study import Arm, Budget, Study

OPTIONS = ("glu", "mos")  # options applied to the vanilla model (t5_span.gin includes vanilla)
# The cpu budget's architectures: vanilla and the most distinct of the others. Left out for the
# 60 core-minute cap: lightconv (dynamicconv's fixed-kernel sibling) and the two options.
CPU_ARCHS = ("vanilla", "albert", "dynamicconv", "evolved", "funnel", "mixer", "performer", "switch", "universal")
# Widths (2 + 2 layers, 4 d_model FF): a geometric ladder, the cheap small ones included.
WIDTHS = {"smoke": (16, 24), "cpu": (16, 24, 32, 48, 64), "gpu": (16, 24, 32, 48, 64, 96, 128)}
VANILLA = "vanilla"


def architectures() -> list[str]:
    """Every architecture gin file, vanilla first and the options last."""
    folder = os.path.join(REPO_ROOT, "gin", "scaling", "arch")
    names = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".gin") and f[:-4] not in OPTIONS)
    return [VANILLA] + [n for n in names if n != VANILLA] + list(OPTIONS)


BUDGETS = {
    "smoke": Budget("smoke", seeds=(0, 1), bindings=span_bindings(4, 2), note="4 steps: tests the pipeline"),
    "cpu": Budget("cpu", seeds=(0, 1, 2), bindings=span_bindings(400, 16),
                  note="400 steps x batch 16 of 32-word documents per run, 1 thread on a 2-core CPU"),
    "gpu": Budget("gpu", seeds=(0, 1, 2, 3, 4), bindings=span_bindings(2000, 32),
                  note="2,000 steps x batch 16 per run, every architecture, 7 widths, for one GPU machine "
                       "with --jobs 16 (planned, not yet run)"),
}
ARCHS = {"smoke": (VANILLA, "switch"), "cpu": CPU_ARCHS, "gpu": None}  # None: every architecture file


def arm_name(arch: str, width: int) -> str:
    return f"{arch}-d{width}"


def arms(archs: Sequence[str], widths: Sequence[int]) -> tuple[Arm, ...]:
    return tuple(Arm(arm_name(arch, width), f"{arch}, d_model {width}",
                     ("gin/scaling/t5_span.gin", f"gin/scaling/size/cpu_d{width}_l2.gin", f"gin/scaling/arch/{arch}.gin"))
                 for arch in archs for width in widths)


def extract(result: Any) -> dict[str, Any]:
    """The final metrics, and the run's parameters and training FLOPs (the x of every fit)."""
    out = protocol.final_metrics(result)
    out["extra"] = run_cost()
    return out


def study(budget: str, archs: Sequence[str] | None = None) -> Study:
    archs = list(archs or ARCHS[budget] or architectures())
    return Study(
        name="scaling_archs", title="Scaling laws vs architectures: excess span-corruption loss per architecture "
                                    "and width",
        arms=arms(archs, WIDTHS[budget]), budgets=BUDGETS, claims=(), metric="excess_loss", direction="lower",
        select_split="validation", report_split="eval", extract=extract, unit="nats",
        notes=("Each arm is one architecture at one width (2 encoder + 2 decoder layers, d_ff = 4 d_model); every "
               "arm trains the same steps on the same data at the gin file's learning rate, untuned. Report: eval "
               "cross-entropy minus the corpus's exact Bayes floor (nats per target token). The corpus is 32 words "
               "and 4 topics: on the gin file's 64 words and 8 topics every CPU width sat on one plateau "
               "(launch/reproductions/_scaling.py says what was measured).",))


# --- the analysis derived from the results ---------------------------------------------------------

def by_arch(results: Mapping[str, Any]) -> dict[str, dict[int, list[tuple[float, float, float]]]]:
    """{arch: {seed: [(train FLOPs, non-embedding parameters, excess loss) per width]}}."""
    out: dict[str, dict[int, list]] = {}
    for arm in results["arms"]:
        arch = arm["name"].rsplit("-d", 1)[0]
        for run in arm["runs"]:
            out.setdefault(arch, {}).setdefault(run["seed"], []).append(
                (run["extra"]["train_flops"], run["extra"]["non_embedding_parameters"], run["report"]))
    return out


def analyse(results: Mapping[str, Any]) -> tuple[dict, dict, str]:
    """The fits table (slope per seed, then mean and 95% interval), the matched-compute ranking on a
    fixed grid of quarter-decades of training FLOPs (each architecture's loss interpolated in log-log
    between its measured widths, per seed, never extrapolated; its difference from vanilla paired by
    seed), the figures and the summary sentence."""
    data = by_arch(results)
    fits_rows, slopes = [], {}
    for arch, seeds in data.items():
        flops_fits = seed_fits({s: [(f, y) for f, _, y in points] for s, points in seeds.items()})
        param_fits = seed_fits({s: [(p, y) for _, p, y in points] for s, points in seeds.items()})
        widths = sorted(zip(*[sorted(points) for points in seeds.values()]))  # per width: every seed's point
        means = [sum(point[2] for point in at) / len(at) for at in widths]
        alphas = [fit.alpha for fit in flops_fits.values()]
        slopes[arch] = statistics.summarize(alphas).mean
        fits_rows.append({"architecture": arch, "params": " / ".join(f"{at[0][1] / 1e3:.0f}K" for at in widths),
                          "gflops": " / ".join(f"{at[0][0] / 1e9:.1f}" for at in widths),
                          "loss": " / ".join(f"{m:.3f}" for m in means), "alpha": interval_text(alphas),
                          "alpha_params": interval_text([fit.alpha for fit in param_fits.values()]),
                          "r2": f"{statistics.summarize([fit.r2 for fit in flops_fits.values()]).mean:.2f}",
                          "seeds": len(alphas), "sort": slopes[arch]})
    fits_rows.sort(key=lambda row: row["sort"])
    everything = [f for seeds in data.values() for points in seeds.values() for f, _, _ in points]
    grid = log_grid(min(everything), max(everything))
    ranking_rows, leaders = [], {}
    for point in grid:
        at = {}
        for arch, seeds in data.items():
            values = {s: loglog_interpolate([(f, y) for f, _, y in points], point) for s, points in seeds.items()}
            if all(v is not None for v in values.values()):
                at[arch] = values
        if len(at) < 2:
            continue
        order = sorted(at, key=lambda a: statistics.summarize(list(at[a].values())).mean)
        leaders[point] = (order[0], len(at))
        for rank, arch in enumerate(order, start=1):
            versus = ""
            if arch != VANILLA and VANILLA in at:
                difference = statistics.paired(at[arch], at[VANILLA], "lower").difference
                versus = (f"{difference.mean:+.3f} [{difference.low:+.3f}, {difference.high:+.3f}]"
                          if difference.low is not None else f"{difference.mean:+.3f}")
            ranking_rows.append({"gflops": f"{point / 1e9:.3g}", "rank": rank, "architecture": arch,
                                 "loss": interval_text(list(at[arch].values())), "versus": versus,
                                 "present": f"{len(at)}/{len(data)}"})
    tables = {
        "fits": table([("architecture", "{architecture}"), ("non-emb. params per width", "{params}"),
                       ("train GFLOPs per width", "{gflops}"), ("excess loss per width (seed mean)", "{loss}"),
                       ("alpha vs FLOPs, mean [95% CI]", "{alpha}"), ("R^2", "{r2}"),
                       ("alpha vs params, mean [95% CI]", "{alpha_params}"), ("seeds", "{seeds}")],
                      [{k: v for k, v in row.items() if k != "sort"} for row in fits_rows],
                      title="Fitted slope of log excess loss on log training FLOPs, one fit per seed over the "
                            "widths (more negative = scales better)"),
        "ranking": table([("train GFLOPs", "{gflops}"), ("rank", "{rank}"), ("architecture", "{architecture}"),
                          ("excess loss, mean [95% CI]", "{loss}"), ("better than vanilla by [95% CI]", "{versus}"),
                          ("architectures covering it", "{present}")], ranking_rows,
                         title="Measured excess loss at fixed compute (quarter-decades of training FLOPs; each "
                               "architecture interpolated in log-log between its widths, never extrapolated)"),
    }
    # The headline reads only the points every architecture covers: elsewhere a leader may just be alone.
    complete = sorted(point for point, (_, present) in leaders.items() if present == len(data))
    figures = {"steepest": fits_rows[0]["architecture"], "steepest_alpha": fits_rows[0]["sort"],
               "flattest": fits_rows[-1]["architecture"], "flattest_alpha": fits_rows[-1]["sort"],
               "vanilla_alpha": slopes.get(VANILLA, float("nan")), "architectures": len(data),
               "complete": len(complete),
               "complete_leaders": "; ".join(f"{leaders[p][0]} at {p / 1e9:.3g} GFLOPs" for p in complete) or "none"}
    summary = ("{architectures} architectures: the steepest mean slope is {steepest}'s ({steepest_alpha:+.3f}), the "
               "flattest {flattest}'s ({flattest_alpha:+.3f}), vanilla's {vanilla_alpha:+.3f}; lowest measured loss "
               "at the {complete} fixed compute point(s) every architecture covers: {complete_leaders}.")
    return tables, figures, summary


def plot(results: Mapping[str, Any], path: str) -> None:
    """Seed-mean excess loss vs FLOPs per architecture, with 95% intervals and the seed-mean fit."""
    from engine.analysis import power_law_fit
    series, errors, fits = {}, {}, {}
    for arch, seeds in by_arch(results).items():
        widths = list(zip(*[sorted(points) for points in seeds.values()]))
        series[arch] = [(at[0][0], statistics.summarize([p[2] for p in at]).mean) for at in widths]
        errors[arch] = [(at[0][0], s.low, s.high) for at in widths
                        for s in [statistics.summarize([p[2] for p in at])] if s.low is not None]
        fits[arch] = power_law_fit(*zip(*series[arch]))
    loglog_plot(path, series, fits, "training FLOPs", "eval excess loss (nats / target token)",
                "Excess span-corruption loss vs compute (seed means, 95% CI)", errors=errors)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default=None, help="comma-separated architectures (default: the budget's)")
    protocol.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.budget not in BUDGETS:
        parser.error(f"unknown budget {args.budget!r}; choose from {sorted(BUDGETS)}")
    archs = args.archs.split(",") if args.archs else None
    unknown = sorted(set(archs or ()) - set(architectures()))
    if unknown:
        parser.error(f"unknown architecture(s) {unknown}; gin/scaling/arch/ has {architectures()}")
    command = command_line("scaling_archs", argv)
    load_start = load_average()
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    each = study(args.budget, archs)
    code = protocol.main([each], args, command)
    if code:
        return code
    return report(each, args.budget, os.path.abspath(args.out), command, load_start)


def report(each: Study, budget: str, out: str, command: str, load_start: Sequence[float]) -> int:
    """Derive the fits, the ranking and the plot from the written results."""
    import json
    with open(os.path.join(out, each.name, f"{budget}.json")) as handle:
        results = json.load(handle)
    tables, figures, summary = analyse(results)
    path = protocol.write_analysis(os.path.join(out, each.name, f"{budget}_analysis.json"), f"{each.name}/{budget}", command,
                          [results], tables, figures, summary, load_start)
    plot(results, os.path.join(out, each.name, f"{budget}_loss_vs_flops.png"))
    print(f"wrote {path}", file=sys.stderr)
    return 0
