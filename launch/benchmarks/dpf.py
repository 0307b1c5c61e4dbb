"""DPF cost: training fields/s, and sampling time per field as the query count grows (256 to 4096).

Queries are decoded independently, so sampling should cost a fixed context-encoding part plus a
part linear in the number of queries: the printed (time ratio) / (query ratio) against the
256-query grid, measured in this process, stays at or below 1 and approaches it as grids grow.

    python launch/bench.py dpf [--gin gin/dpf/dpf_images.gin] [--sampler-steps 10] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from engine.config import REPO_ROOT
from launch.benchmarks._record import Record, table
from launch.benchmarks._timing import interleaved, training_seconds


def build(gin_file: str):
    import gin

    from engine import config
    config.import_packages()
    config.reset()
    config.parse([gin_file], [])
    task = gin.get_configurable("FieldDiffusion")()
    model = gin.get_configurable("FieldDenoiser")()
    return task, model, gin.query_parameter("train.batch_size")


def training_rate(task, model, batch_size: int, warm: int, steps: int) -> float:
    """Fields per second of forward + backward + AdamW on pre-generated batches."""
    return steps * batch_size / training_seconds(task, model, batch_size, warm, steps)


def sampling_seconds(task, model, side: int, fields: int) -> float:
    """Seconds to sample `fields` fields on a side x side query grid (the task's own sampler path)."""
    model.eval()
    start = time.perf_counter()
    task.sample(model, fields, side, torch.Generator().manual_seed(0))
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gin", default=os.path.join(REPO_ROOT, "gin", "dpf", "dpf_images.gin"))
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--warm-steps", type=int, default=3)
    parser.add_argument("--fields", type=int, default=4, help="fields sampled per timing")
    parser.add_argument("--sampler-steps", type=int, default=10, help="DDIM steps per sample")
    parser.add_argument("--sides", default="16,23,32,45,64", help="query grid sides (256 to 4096 queries)")
    parser.add_argument("--repeats", type=int, default=3)
    record = Record(__name__, parser, argv)
    args = record.args
    from tasks.common.diffusion import DDIMSampler
    task, model, batch_size = build(args.gin)
    task.sampler = DDIMSampler(steps=args.sampler_steps)
    sides = [int(s) for s in args.sides.split(",")]
    rate = training_rate(task, model, batch_size, args.warm_steps, args.train_steps)
    points = task.context_points + task.query_points
    print(f"threads: {torch.get_num_threads()}, {os.path.basename(args.gin)}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")
    print(f"training: {rate:.1f} fields/s ({rate * points:.0f} points/s; batch {batch_size}, "
          f"{task.context_points} context + {task.query_points} query points per field)")
    with torch.no_grad():
        sampling_seconds(task, model, sides[0], args.fields)  # warm-up
        timings = interleaved({side: (lambda side=side: sampling_seconds(task, model, side, args.fields))
                               for side in sides}, args.repeats)
    base_side = sides[0]
    print(f"sampling: {args.fields} fields x {args.sampler_steps} DDIM steps, "
          f"{task.sample_context_points} context points, median of {args.repeats}")
    # The marginal cost (s per field per 1000 extra queries, from the previous grid) is flat when
    # the cost is linear in the query count; the fixed context-encoding part only shows at 256.
    print(f"{'queries':>8} {'s/field':>9} {'ms/field/step':>14} {'time ratio':>11} {'query ratio':>12} "
          f"{'time/query ratio':>17} {'marginal s/1k queries':>22}")
    rows = []
    for index, side in enumerate(sides):
        queries = side * side
        per_field = timings[side] / args.fields
        time_ratio = timings[side] / timings[base_side]
        query_ratio = queries / base_side ** 2
        marginal = ""
        if index:
            previous = sides[index - 1]
            extra = (timings[side] - timings[previous]) / args.fields
            marginal = f"{1000 * extra / (queries - previous * previous):.3f}"
        print(f"{queries:>8} {per_field:>9.3f} {1000 * per_field / args.sampler_steps:>14.2f} "
              f"{time_ratio:>11.2f} {query_ratio:>12.2f} {time_ratio / query_ratio:>17.2f} {marginal:>22}")
        rows.append({"queries": queries, "s_per_field": per_field, "ms_per_step": 1000 * per_field / args.sampler_steps,
                     "time_ratio": time_ratio, "query_ratio": query_ratio, "linearity": time_ratio / query_ratio,
                     "marginal": marginal})
    record.save({"parameters": sum(p.numel() for p in model.parameters()), "fields_per_s": rate,
                 "points_per_s": rate * points, "batch_size": batch_size, "context_points": task.context_points,
                 "query_points": task.query_points, "sample_context_points": task.sample_context_points,
                 "fields": args.fields, "sampler_steps": args.sampler_steps,
                 "first_queries": rows[0]["queries"], "first_s_per_field": rows[0]["s_per_field"],
                 "last_queries": rows[-1]["queries"], "last_s_per_field": rows[-1]["s_per_field"]},
                {"sampling": table([("queries", "{queries}"), ("s/field", "{s_per_field:.3f}"),
                                    ("ms/field/step", "{ms_per_step:.2f}"), ("time ratio", "{time_ratio:.2f}"),
                                    ("query ratio", "{query_ratio:.2f}"), ("time/query ratio", "{linearity:.2f}"),
                                    ("marginal s/1k queries", "{marginal}")], rows)},
                summary="Training: {fields_per_s:.1f} fields/s ({points_per_s:,.0f} points/s; batch {batch_size}, "
                        "{context_points} context + {query_points} query points per field). Sampling "
                        "({sampler_steps} DDIM steps, {sample_context_points} context points): {first_s_per_field:.3f} "
                        "s per field at {first_queries:,} queries, {last_s_per_field:.3f} s at {last_queries:,}.")
    return 0
