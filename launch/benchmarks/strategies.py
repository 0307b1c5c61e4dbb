"""Strategies: steps/s and per-rank peak memory of every strategy on 2 ranks, relative to `ddp`.

Each strategy trains the same model (gin/hyperut/transformer_pvr.gin shapes by default) for the same
steps in a fresh `torchrun --nproc-per-node 2` job, one after another, alternating over repeats;
throughput is the median of the logged steady-state step times (the first steps are skipped),
memory the per-rank peak resident set (CPU) or peak allocated memory (CUDA) logged at the end.
On a GPU machine the same command measures CUDA + NCCL.

`--size` picks larger Transformers (AdamW, batch 2) where parameters, gradients and optimizer
state dominate a rank's memory, which is where sharding them pays: `--size 25m,100m,150m` runs
every strategy at each size and prints each strategy's memory ratio to DDP per size, and the size
from which it is below 1 (the crossover). Peak memory settles within a few steps, so a size preset
runs 6 steps once unless `--steps` / `--repeats` say otherwise (its steps/s are not steady-state).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from engine.config import REPO_ROOT
from launch.benchmarks._record import Record, table

STRATEGIES = ["ddp", "fsdp", "deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero3", "fairscale"]


def _transformer(d_model: int, num_layers: int) -> list[str]:
    return [f"TransformerClassifier.d_model = {d_model}", f"TransformerClassifier.num_layers = {num_layers}",
            f"TransformerClassifier.d_ff = {4 * d_model}",
            "train.batch_size = 2"]


#: Model sizes: gin bindings on top of gin/hyperut/transformer_pvr.gin (parameters, AdamW).
SIZES = {
    "pvr": [],                       # 0.8M: the transformer_pvr shapes
    "25m": _transformer(512, 8),     # 25.2M
    "100m": _transformer(1024, 8),   # 100.7M
    "150m": _transformer(1024, 12),  # 151.1M
    "300m": _transformer(1024, 24),  # 302.2M
}
#: Where sharding should have paid by the time optimizer state dominates (2 ranks, AdamW).
GOALS = {"fsdp": 0.6, "deepspeed_zero3": 0.6, "deepspeed_zero1": 0.8, "deepspeed_zero2": 0.8}


def run_job(strategy: str, workdir: str, steps: int, bindings: list[str], nproc: int) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               os.path.join(REPO_ROOT, "launch", "run.py"),
               "--gin", os.path.join(REPO_ROOT, "gin", "hyperut", "transformer_pvr.gin"),
               "--gin", os.path.join(REPO_ROOT, "gin", "strategy", f"{strategy}.gin"), "--workdir", workdir,
               "--bind", f"train.steps = {steps}", "--bind", "train.log_every = 1", "--bind", "train.eval_every = 0",
               "--bind", "train.checkpoint_every = 0"]
    for binding in bindings:
        command += ["--bind", binding]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{strategy} failed:\n{done.stderr[-3000:]}")
    with open(os.path.join(workdir, "metrics.jsonl")) as handle:
        records = [json.loads(line) for line in handle]
    times = [r["step_time_s"] for r in records if r["split"] == "train"][steps // 4:]
    memory = [r for r in records if r["split"] == "memory"][-1]
    peaks = [memory[f"peak_memory_mb/rank_{r}"] for r in range(nproc)]
    shutil.rmtree(workdir, ignore_errors=True)  # its final checkpoint: 12 bytes a parameter, per job
    return {"steps_per_s": 1.0 / statistics.median(times), "peak_mb": max(peaks),
            "parameter_mb": memory["parameter_bytes/rank_0"] / 2**20,
            "optimizer_mb": memory["optimizer_bytes/rank_0"] / 2**20}


def crossover(ratios: list[tuple[float, float]]) -> float | None:
    """The parameter count at which a strategy's memory ratio to DDP falls below 1, from (parameters,
    ratio) pairs in increasing size: interpolated in log(parameters) between the two sizes around
    it; the smallest size where it is below 1 at every size measured; None where it never is."""
    if not ratios or ratios[-1][1] >= 1.0:
        return None
    if all(ratio < 1.0 for _, ratio in ratios):
        return ratios[0][0]
    for (small, above), (large, below) in zip(ratios, ratios[1:]):
        if above >= 1.0 > below:
            fraction = (above - 1.0) / (above - below)
            return math.exp(math.log(small) + fraction * (math.log(large) - math.log(small)))
    return None


def _count(parameters: float) -> str:
    return f"{parameters / 1e6:.1f}M"


def measure(strategies: list[str], size: str, steps: int, repeats: int, bind: list[str], nproc: int,
            tmp: str) -> dict[str, dict]:
    """Median figures of each strategy at `size` (one torchrun job per strategy and repeat)."""
    results: dict[str, list[dict]] = {s: [] for s in strategies}
    for repeat in range(repeats):
        for strategy in strategies:
            workdir = os.path.join(tmp, f"{size}-{strategy}-{repeat}")
            results[strategy].append(run_job(strategy, workdir, steps, SIZES[size] + bind, nproc))
            print(f"  {size:5s} {strategy:16s} repeat {repeat}: {results[strategy][-1]['steps_per_s']:.2f} steps/s, "
                  f"{results[strategy][-1]['peak_mb']:.0f} MB", file=sys.stderr)
    summary = {s: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for s, runs in results.items()}
    base = summary["ddp"]
    parameters = base["parameter_mb"] * 2**20 / 4  # fp32 weights, whole on a DDP rank
    return {s: {**row, "size": size, "parameters": parameters, "speed_vs_ddp": row["steps_per_s"] / base["steps_per_s"],
                "memory_vs_ddp": row["peak_mb"] / base["peak_mb"]} for s, row in summary.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--size", default="pvr", help=f"model size(s), comma-separated: {', '.join(SIZES)} "
                                                     "(pvr: the transformer_pvr shapes)")
    parser.add_argument("--steps", type=int, help="steps per job (default 60 at pvr, 6 at the larger sizes)")
    parser.add_argument("--repeats", type=int, help="jobs per strategy (default 2 at pvr, 1 at the larger sizes)")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--bind", action="append", default=[], help="extra gin bindings for every job")
    record = Record(__name__, parser, argv)
    args = record.args
    sizes = [s.strip() for s in args.size.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown or not sizes:
        parser.error(f"--size {args.size!r}: choose from {', '.join(SIZES)}")
    strategies = args.strategies.split(",")
    if "ddp" not in strategies:
        strategies.insert(0, "ddp")
    by_size: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            steps = args.steps or (60 if size == "pvr" else 6)
            repeats = args.repeats or (2 if size == "pvr" else 1)
            by_size[size] = measure(strategies, size, steps, repeats, args.bind, args.nproc, tmp)
    import torch
    device = "CUDA" if torch.cuda.is_available() else "CPU/gloo"
    memory = "peak resident set per rank (MB)" if device == "CPU/gloo" else "peak allocated per rank (MB)"
    columns = [("strategy", "{strategy}"), ("steps/s", "{steps_per_s:.1f}"), ("vs ddp", "{speed_vs_ddp:.2f}x"),
               (memory, "{peak_mb:.0f}"), ("vs ddp", "{memory_vs_ddp:.2f}x")]
    if sizes != ["pvr"]:
        columns += [("parameters per rank (MB)", "{parameter_mb:.0f}"), ("optimizer state per rank (MB)", "{optimizer_mb:.0f}")]
    tables = {}
    for size, summary in by_size.items():
        rows = [{"strategy": strategy, **row} for strategy, row in summary.items()]
        steps = args.steps or (60 if size == "pvr" else 6)
        print(f"\n{args.nproc} ranks on {device}, {'transformer_pvr shapes' if size == 'pvr' else 'size ' + size}: "
              f"{_count(rows[0]['parameters'])} parameters, {steps} steps")
        print("| " + " | ".join(head for head, _ in columns) + " |")
        print("|" + "---|" * len(columns))
        for row in rows:
            print("| " + " | ".join(template.format(**row) for _, template in columns) + " |")
        tables["strategies" if len(by_size) == 1 else f"strategies_{size}"] = table(
            columns, rows, title="" if len(by_size) == 1 else f"{size}: {_count(rows[0]['parameters'])} parameters")
    figures = {"nproc": args.nproc, "device": device,
               "threads_per_rank": int(os.environ.get("OMP_NUM_THREADS", "1")),
               "ddp_steps_per_s": by_size[sizes[0]]["ddp"]["steps_per_s"],
               "ddp_peak_mb": by_size[sizes[0]]["ddp"]["peak_mb"]}
    summary = ("{nproc} ranks on {device}, {threads_per_rank} thread(s) each: ddp at {ddp_steps_per_s:.1f} steps/s "
               "and {ddp_peak_mb:.0f} MB per rank.")
    if len(by_size) > 1:
        rows = []
        print(f"\nPeak memory per rank relative to ddp, and where sharding starts to pay (ratio < 1):")
        print("| strategy | " + " | ".join(f"{s} ({_count(by_size[s]['ddp']['parameters'])})" for s in sizes)
              + " | pays from | goal |")
        print("|" + "---|" * (len(sizes) + 3))
        for strategy in strategies[1:]:
            ratios = [(by_size[s][strategy]["parameters"], by_size[s][strategy]["memory_vs_ddp"]) for s in sizes]
            point = crossover(ratios)
            goal = GOALS.get(strategy)
            met = "" if goal is None else f"<= {goal}: {'met' if ratios[-1][1] <= goal else 'not met'} at {sizes[-1]}"
            row = {"strategy": strategy, "pays_from": "never (in this range)" if point is None
                   else ("below 1 at every size" if point == ratios[0][0] else f"~{_count(point)}"), "goal": met}
            row.update({f"ratio_{s}": ratio for s, (_, ratio) in zip(sizes, ratios)})
            rows.append(row)
            print(f"| {strategy} | " + " | ".join(f"{r:.2f}x" for _, r in ratios) + f" | {row['pays_from']} | {met} |")
        tables["crossover"] = table([("strategy", "{strategy}")]
                                    + [(f"{s} ({_count(by_size[s]['ddp']['parameters'])}) vs ddp", f"{{ratio_{s}:.2f}}x")
                                       for s in sizes]
                                    + [("pays from", "{pays_from}"), ("goal", "{goal}")], rows,
                                    title="peak memory per rank relative to ddp, by model size")
    record.save(figures, tables, summary=summary)
    return 0
