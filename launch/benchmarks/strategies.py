"""Strategies: steps/s and per-rank peak memory of every strategy on 2 ranks, relative to `ddp`.

Each strategy trains the same model (gin/hyperut/transformer_pvr.gin shapes by default) for the same
steps in a fresh `torchrun --nproc-per-node 2` job, one after another, alternating over repeats;
throughput is the median of the logged steady-state step times (the first steps are skipped),
memory the per-rank peak resident set (CPU) or peak allocated memory (CUDA) logged at the end.
On a GPU machine the same command measures CUDA + NCCL.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from engine.config import REPO_ROOT
from launch.benchmarks._record import Record, table

STRATEGIES = ["ddp", "fsdp", "deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero3", "fairscale"]


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
    return {"steps_per_s": 1.0 / statistics.median(times), "peak_mb": max(peaks)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--bind", action="append", default=[], help="extra gin bindings for every job")
    record = Record(__name__, parser, argv)
    args = record.args
    strategies = args.strategies.split(",")
    if "ddp" not in strategies:
        strategies.insert(0, "ddp")
    results: dict[str, list[dict]] = {s: [] for s in strategies}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for strategy in strategies:
                workdir = os.path.join(tmp, f"{strategy}-{repeat}")
                results[strategy].append(run_job(strategy, workdir, args.steps, args.bind, args.nproc))
                print(f"  {strategy:16s} repeat {repeat}: {results[strategy][-1]['steps_per_s']:.1f} steps/s",
                      file=sys.stderr)
    summary = {s: {"steps_per_s": statistics.median(r["steps_per_s"] for r in runs),
                   "peak_mb": statistics.median(r["peak_mb"] for r in runs)} for s, runs in results.items()}
    base = summary["ddp"]
    import torch
    device = "CUDA" if torch.cuda.is_available() else "CPU/gloo"
    print(f"{args.nproc} ranks on {device}, transformer_pvr shapes, {args.steps} steps x {args.repeats} repeats")
    rows = [{"strategy": strategy, **row, "speed_vs_ddp": row["steps_per_s"] / base["steps_per_s"],
             "memory_vs_ddp": row["peak_mb"] / base["peak_mb"]} for strategy, row in summary.items()]
    print("| strategy | steps/s | vs ddp | peak memory per rank (MB) | vs ddp |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['strategy']} | {row['steps_per_s']:.1f} | {row['speed_vs_ddp']:.2f}x "
              f"| {row['peak_mb']:.0f} | {row['memory_vs_ddp']:.2f}x |")
    memory = "peak resident set per rank (MB)" if device == "CPU/gloo" else "peak allocated per rank (MB)"
    record.save({"nproc": args.nproc, "device": device, "threads_per_rank": int(os.environ.get("OMP_NUM_THREADS", "1")),
                 "ddp_steps_per_s": base["steps_per_s"],
                 "ddp_peak_mb": base["peak_mb"]},
                {"strategies": table([("strategy", "{strategy}"), ("steps/s", "{steps_per_s:.1f}"),
                                      ("vs ddp", "{speed_vs_ddp:.2f}x"), (memory, "{peak_mb:.0f}"),
                                      ("vs ddp", "{memory_vs_ddp:.2f}x")], rows)},
                summary="{nproc} ranks on {device}, {threads_per_rank} thread(s) each: ddp at {ddp_steps_per_s:.1f} steps/s and {ddp_peak_mb:.0f} MB "
                        "per rank.")
    return 0
