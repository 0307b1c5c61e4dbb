"""Overlapped input pipeline: steps/s of `train` with batches generated ahead in a thread
(`train.prefetch`) vs generated in the loop (`train.prefetch = 0`), losses checked identical.

The task is C-PVR at transformer_pvr shapes plus a stand-in for decoding on every training batch:
numpy work that releases the GIL (sorting normal draws from the batch's own generator), sized at
start to take `--cost` times one training step, as a slow generator or decoder would. Torch trains
on `--threads` threads (default 1: one core trains, the other is free to generate, as on a machine
whose accelerator runs the step). Both loops run in this process, alternating over repeats.
Goal: >= 1.3x steps/s at `--cost 1` on 2 cores, losses identical.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from engine.config import GIN_DIR
from engine.data import batch_rng
from engine.task import Task
from launch.benchmarks._record import Record
from launch.benchmarks._timing import engine_run, interleaved, training_seconds

GIN = os.path.join(GIN_DIR, "hyperut", "transformer_pvr.gin")


def decode(rng: np.random.Generator, elements: int) -> float:
    """The stand-in for decoding one batch: GIL-free numpy work of `elements` numbers."""
    return float(np.sort(rng.standard_normal(elements))[elements // 2])


class Decoded(Task):
    """`task` whose every training batch first costs `decode(elements)` (the batch is unchanged)."""

    def __init__(self, task: Task, elements: int) -> None:
        self.task, self.elements = task, elements

    def batches(self, split, shard):
        for index, batch in enumerate(self.task.batches(split, shard), start=shard.start):
            if split == "train":
                decode(batch_rng(shard.seed, f"{split}/decode", index), self.elements)
            yield batch

    def loss(self, model, batch):
        return self.task.loss(model, batch)

    def tokens(self, batch):
        return self.task.tokens(batch)


def calibrate(cost: float, warm: int, steps: int) -> tuple[int, float, float]:
    """Elements per batch for `decode` to take `cost` x a training step; (elements, step s, decode s)."""
    import gin
    task = gin.get_configurable("CPVR")()
    torch.manual_seed(0)
    model = gin.get_configurable("TransformerClassifier")()
    step_s = training_seconds(task, model, gin.query_parameter("train.batch_size"), warm, steps) / steps
    probe = 1 << 18
    rng = np.random.default_rng(0)
    per_element = min(_timed(lambda: decode(rng, probe)) for _ in range(5)) / probe
    elements = max(1, round(cost * step_s / per_element))
    decode_s = min(_timed(lambda: decode(rng, elements)) for _ in range(3))
    return elements, step_s, decode_s


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def engine_loop(elements: int, prefetch: int, warm_steps: int, steps: int, log_every: int) -> dict:
    """Steps/s of `train` after warm-up, its logged train losses and mean data wait per step."""
    import gin
    return engine_run({"train.task": Decoded(gin.get_configurable("CPVR")(), elements), "train.prefetch": prefetch},
                      warm_steps, steps, log_every)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warm-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prefetch", type=int, default=2, help="queue depth of the prefetched run")
    parser.add_argument("--cost", type=float, default=1.0, help="decoding time per batch / training step time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    record = Record(__name__, parser, argv)
    args = record.args
    if args.prefetch < 1:
        parser.error("--prefetch must be at least 1 (the baseline is prefetch 0)")
    torch.set_num_threads(args.threads)
    from engine import config
    config.import_packages()
    config.reset()
    config.parse([GIN], [])
    elements, step_s, decode_s = calibrate(args.cost, warm=3, steps=10)
    log_every = max(1, min(10, args.steps // 4))
    runs: dict[str, list[dict]] = {"synchronous": [], "prefetch": []}

    def measure(name: str, prefetch: int):
        def run() -> float:
            runs[name].append(engine_loop(elements, prefetch, args.warm_steps, args.steps, log_every))
            return runs[name][-1]["steps_per_s"]
        return run

    rates = interleaved({"synchronous": measure("synchronous", 0), "prefetch": measure("prefetch", args.prefetch)},
                        args.repeats)
    identical = all(run["losses"] == runs["synchronous"][0]["losses"] for name in runs for run in runs[name])
    ratio = rates["prefetch"] / rates["synchronous"]
    wait = {name: statistics.median(run["wait_ms"] for run in runs[name]) for name in runs}
    print(f"torch threads: {torch.get_num_threads()}, {args.steps} timed steps x {args.repeats}; bare step "
          f"{1000 * step_s:.1f} ms, decoding {1000 * decode_s:.1f} ms per batch ({elements} numbers sorted)")
    print(f"prefetch 0 (in the loop) : {rates['synchronous']:8.2f} steps/s, data wait {wait['synchronous']:7.2f} ms/step")
    print(f"prefetch {args.prefetch} (thread)    : {rates['prefetch']:8.2f} steps/s, data wait {wait['prefetch']:7.2f} ms/step")
    print(f"ratio prefetch/in-loop   : {ratio:.3f}   (goal >= 1.3)")
    print(f"losses identical         : {identical}")
    record.save({"synchronous_steps_per_s": rates["synchronous"], "prefetch_steps_per_s": rates["prefetch"],
                 "ratio": ratio, "synchronous_wait_ms": wait["synchronous"], "prefetch_wait_ms": wait["prefetch"],
                 "step_ms": 1000 * step_s, "decode_ms": 1000 * decode_s, "elements": elements,
                 "losses_identical": "yes" if identical else "NO", "prefetch": args.prefetch},
                summary="Decoding {decode_ms:.1f} ms per batch against a {step_ms:.1f} ms step: `train.prefetch = "
                        "{prefetch}` runs at {prefetch_steps_per_s:.2f} vs {synchronous_steps_per_s:.2f} steps/s in "
                        "the loop, ratio **{ratio:.2f}** (goal >= 1.3); data wait {prefetch_wait_ms:.1f} vs "
                        "{synchronous_wait_ms:.1f} ms per step; losses identical: {losses_identical}.")
    return 0 if identical else 1
