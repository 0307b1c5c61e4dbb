"""Scaling Laws vs Model Architectures at CPU scale: every architecture in gin/scaling/arch/
(plus GLU and mixture-of-softmaxes on the vanilla model) at 3 tiny T5 shapes, pre-trained with
span corruption on the topic-Markov corpus; a log-log slope per architecture and a ranking per
compute bucket.

    python launch/reproduce.py scaling_archs [--steps 300] [--out runs/reproductions/scaling_archs/steps300]

Writes results/scaling_archs/{table.md, loss_vs_flops.png, slopes.png}. Resumable: finished
runs are read back from the sweep's records.jsonl.
"""
from __future__ import annotations

import argparse
import math
import os
import time

from engine.config import REPO_ROOT
from launch.experiment import markdown_table
from launch.reproductions._scaling import fit_groups, fmt, load_note, loglog_plot, training_minutes, write
from launch.sweep import Interrupted, sweep
from tasks.text.span_corruption import span_counts

SIZES = ["cpu_d32_l2", "cpu_d48_l2", "cpu_d64_l3"]
OPTIONS = ("glu", "mos")  # options, applied to the vanilla model
LENGTH = 32
STEPS = 300


def architectures() -> list[str]:
    """Every architecture gin file (a Performer file added later is picked up too)."""
    folder = os.path.join(REPO_ROOT, "gin", "scaling", "arch")
    names = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".gin") and f[:-4] not in OPTIONS)
    return ["vanilla"] + [n for n in names if n != "vanilla"] + list(OPTIONS)


def bindings(steps: int) -> list[str]:
    return [f"train.steps = {steps}", "train.batch_size = 16", f"train.eval_every = {steps}",
            f"train.checkpoint_every = {steps}", "train.log_every = 50", f"SpanCorruption.length = {LENGTH}",
            "SpanCorruption.eval_batches = 16", f"T5.max_input_length = {LENGTH}",
            f"WarmupCosine.warmup_steps = {max(steps // 10, 1)}"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", help="sweep folder (default runs/reproductions/scaling_archs/steps<N>)")
    parser.add_argument("--results", default=os.path.join(REPO_ROOT, "results", "scaling_archs"))
    args = parser.parse_args(argv)
    args.out = args.out or os.path.join(REPO_ROOT, "runs", "reproductions", "scaling_archs", f"steps{args.steps}")
    start = time.time()
    records = []
    for arch in architectures():
        # t5_span.gin includes the vanilla architecture, so an option file lands on top of it.
        files = ["gin/scaling/t5_span.gin", f"gin/scaling/arch/{arch}.gin"]
        try:
            found = sweep(files, [("SIZE", SIZES)], bindings(args.steps), os.path.join(args.out, arch))
        except Interrupted:
            return 1
        records += [dict(r, arch=arch) for r in found]
    minutes = (time.time() - start) / 60
    report(records, args, minutes)
    return 0


def report(records: list[dict], args, minutes: float) -> None:
    loss = lambda r: r["upstream"]["cross_entropy"]           # noqa: E731
    excess = lambda r: r["upstream"]["excess_loss"]            # noqa: E731
    flops = lambda r: r["train_flops"]                          # noqa: E731
    by_arch = lambda r: r["arch"]                               # noqa: E731
    fits_flops = fit_groups(records, by_arch, flops, excess)
    fits_params = fit_groups(records, by_arch, lambda r: r["non_embedding_parameters"], excess)
    fits_loss = fit_groups(records, by_arch, flops, loss)
    floor = records[0]["upstream"]["bayes_floor"]
    rows = []
    for arch in dict.fromkeys(r["arch"] for r in records):
        mine = sorted((r for r in records if r["arch"] == arch), key=flops)
        rows.append({"architecture": arch,
                     "params (non-emb.)": " / ".join(f"{r['non_embedding_parameters'] / 1e3:.0f}K" for r in mine),
                     "train GFLOPs": " / ".join(f"{flops(r) / 1e9:.1f}" for r in mine),
                     "steps/s": " / ".join(f"{r['steps_per_s']:.1f}" for r in mine),
                     "loss": " / ".join(f"{loss(r):.3f}" for r in mine),
                     "alpha (excess vs FLOPs)": fmt(fits_flops[arch].alpha), "R^2": fmt(fits_flops[arch].r2, ".2f"),
                     "alpha (excess vs params)": fmt(fits_params[arch].alpha),
                     "alpha (loss vs FLOPs)": fmt(fits_loss[arch].alpha)})
    rows.sort(key=lambda row: float(row["alpha (excess vs FLOPs)"]))
    # Ranking per compute bucket: a bucket per size (the geometric mean of that size's FLOPs over
    # architectures); each fit is read there if it lies within its own FLOPs range (+-25%).
    ranking = []
    for size in SIZES:
        at_size = [flops(r) for r in records if r["axes"]["SIZE"] == size]
        centre = math.exp(sum(map(math.log, at_size)) / len(at_size))
        inside = {}
        for arch, fit in fits_flops.items():
            mine = [flops(r) for r in records if r["arch"] == arch]
            if min(mine) / 1.25 <= centre <= max(mine) * 1.25:
                inside[arch] = fit(centre)
        order = sorted(inside, key=inside.get)
        ranking.append({"bucket": size, "train GFLOPs": f"{centre / 1e9:.2f}",
                        "ranking by fitted excess loss (best first)": ", ".join(
                            f"{a} ({inside[a]:.3f})" for a in order)})
    steps = records[0]["steps"]
    noise, spans = span_counts(LENGTH, 0.15, 3.0)
    command = "python launch/reproduce.py scaling_archs" + (f" --steps {args.steps}" if args.steps != STEPS else "")
    timing = f"{training_minutes(records):.0f} min in training loops" + (
        f", {minutes:.0f} min wall for this command" if minutes >= 1 else "")
    text = (f"# Scaling laws vs architectures (CPU scale)\n\nCommand: `{command}`  \n"
            f"Budget: {len(records)} runs, {steps} steps x batch 16, documents of {LENGTH} words "
            f"(inputs {LENGTH - noise + spans + 1} tokens, targets {noise + spans + 1}), sizes {', '.join(SIZES)}; "
            f"{timing} (1 thread per run; {load_note()} when the report was written).  \n"
            f"Exact Bayes floor of the eval set: {floor:.3f} nats per target token; "
            "excess loss = eval cross-entropy - floor. alpha: slope of log(excess loss) on log(x); "
            "more negative = scales better. Per-size columns are ordered by training FLOPs.\n\n"
            + markdown_table(rows, list(rows[0])) + "\n## Ranking per compute bucket\n\n"
            + markdown_table(ranking, list(ranking[0])))
    write(os.path.join(args.results, "table.md"), text)
    series = {a: [(flops(r), excess(r)) for r in records if r["arch"] == a] for a in fits_flops}
    loglog_plot(os.path.join(args.results, "loss_vs_flops.png"), series, fits_flops, "training FLOPs",
                "eval excess loss (nats / target token)", "Excess span-corruption loss vs compute")
    slopes_plot(os.path.join(args.results, "slopes.png"), fits_flops)
    print(text)


def slopes_plot(path: str, fits) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = sorted(fits, key=lambda a: fits[a].alpha)
    figure, axis = plt.subplots(figsize=(7, 3.5))
    axis.bar(names, [fits[a].alpha for a in names], color=["tab:red" if a == "vanilla" else "tab:blue" for a in names])
    axis.set_ylabel("alpha (excess loss vs FLOPs)")
    axis.set_title("Scaling slope per architecture (more negative = better)")
    axis.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
