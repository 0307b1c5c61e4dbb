"""Activation checkpointing at LRA lengths: peak memory of a training step and its time, with
`train.activation_checkpointing` (engine/activation_checkpointing.py) vs without, per attention.

    python launch/bench.py activation_checkpointing            # 4K tokens, ~5 min on one CPU thread

The model is the LRA byte-level text encoder (4 layers, width 256, 4 heads, MLP 1024) with each
attention core built from its gin/lra/attention/<name>.gin, the same weights with and without the
switch. Memory is the peak resident set growth of one training step after a first step has
allocated gradients and Adam state (the attention benchmark's `PeakMemory`): the activations, the
thing checkpointing trades. Every variant's memory is measured before anything is timed, with
every large block its own mapping (as in the attention benchmark), so a measurement does not
depend on the order of the variants. Time is the median of the timed steps, both arms
interleaved step by step. Goal: <= 0.6x the memory without it at 4K tokens (dense attention), with
the time cost printed.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from engine.activation_checkpointing import checkpoint_activations
from launch.benchmarks._record import Record
from launch.benchmarks._record import table as record_table
from launch.benchmarks.attention import NAMES, PeakMemory, allocator, build, train_step

VARIANTS = ("naive", "sdpa", "local", "linear", "performer")


class CudaPeak:
    """Peak allocated CUDA memory during the block, above what was allocated at entry, in MiB."""

    def __enter__(self) -> "CudaPeak":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.start = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc) -> None:
        torch.cuda.synchronize()
        self.mib = (torch.cuda.max_memory_allocated() - self.start) / 2**20


def timed_step(model, optimizer, tokens, labels) -> float:
    if tokens.is_cuda:
        torch.cuda.synchronize()
    seconds = train_step(model, optimizer, tokens, labels)
    if tokens.is_cuda:
        start = time.perf_counter()
        torch.cuda.synchronize()
        seconds += time.perf_counter() - start
    return seconds


def arms_and_batch(variant: str, length: int, batch: int, device: str):
    """The plain model and a checkpointed copy (same weights), their Adam optimizers, and a batch."""
    generator = torch.Generator().manual_seed(length)
    tokens = torch.randint(0, 256, (batch, length), generator=generator).to(device)
    labels = torch.randint(0, 2, (batch,), generator=generator).to(device)
    plain, _ = build(variant, length)
    plain.to(device)
    recomputing = copy.deepcopy(plain)
    checkpoint_activations(recomputing)
    arms = {"plain": plain, "checkpointed": recomputing}
    optimizers = {name: torch.optim.Adam(model.parameters(), lr=1e-4) for name, model in arms.items()}
    return arms, optimizers, tokens, labels


def measure_memory(variant: str, length: int, batch: int, device: str = "cpu") -> dict[str, float]:
    """Peak MiB of a training step without and with checkpointing, after a first step has allocated
    gradients and Adam state. Call with allocator(measuring=True) and before anything in this
    process is timed: a heap grown under glibc's adaptive threshold would serve the measured step
    from its free lists, so the resident peak would depend on what ran before."""
    arms, optimizers, tokens, labels = arms_and_batch(variant, length, batch, device)
    for name, model in arms.items():
        torch.manual_seed(0)
        train_step(model, optimizers[name], tokens, labels)
    memory = {}
    for name, model in arms.items():
        with (CudaPeak() if device == "cuda" else PeakMemory()) as peak:
            torch.manual_seed(1)
            timed_step(model, optimizers[name], tokens, labels)
        memory[name] = peak.mib
    return {"plain_mib": memory["plain"], "checkpointed_mib": memory["checkpointed"],
            "memory_ratio": memory["checkpointed"] / memory["plain"]}


def measure_time(variant: str, length: int, batch: int, steps: int, device: str = "cpu") -> dict[str, float]:
    """Median seconds per step without and with checkpointing (interleaved step by step, the same
    dropout masks in both), and whether both arms trained to the same weights."""
    arms, optimizers, tokens, labels = arms_and_batch(variant, length, batch, device)
    times: dict[str, list[float]] = {name: [] for name in arms}
    for index in range(steps + 1):  # the first step allocates gradients and Adam state: not timed
        for name, model in arms.items():
            torch.manual_seed(2 + index)
            seconds = timed_step(model, optimizers[name], tokens, labels)
            if index:
                times[name].append(seconds)
    plain, recomputing = arms["plain"], arms["checkpointed"]
    # Bit-identical on the CPU; CUDA's backward kernels may sum in another order from run to run.
    tolerance = dict(rtol=0.0, atol=0.0) if device == "cpu" else dict(rtol=1e-3, atol=1e-5)
    same = all(torch.allclose(a, b, **tolerance) for a, b in zip(plain.parameters(), recomputing.parameters()))
    return {"plain_s": statistics.median(times["plain"]), "checkpointed_s": statistics.median(times["checkpointed"]),
            "time_ratio": statistics.median(times["checkpointed"]) / statistics.median(times["plain"]),
            "same_weights": same}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="subset of " + ",".join(VARIANTS))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per arm after the measured one")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: peak allocated CUDA memory instead of the resident set")
    record = Record(__name__, parser, argv)
    args = record.args
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {VARIANTS}")
    torch.set_num_threads(args.threads)
    from engine import config
    config.import_packages()
    rows = []
    print(f"text encoder at {args.length} tokens, batch {args.batch}, on {args.device}, {args.threads} thread(s), "
          f"median of {args.steps} step(s)")
    allocator(measuring=True)  # memory first, every variant (see measure_memory)
    memory = {variant: measure_memory(variant, args.length, args.batch, args.device) for variant in variants}
    allocator(measuring=False)  # freed tensors reused, as in an ordinary run
    for variant in variants:
        row = {"model": NAMES[variant], **memory[variant],
               **measure_time(variant, args.length, args.batch, args.steps, args.device)}
        rows.append(row)
        print(f"  {row['model']:22s} memory {row['plain_mib']:7.0f} -> {row['checkpointed_mib']:7.0f} MiB "
              f"({row['memory_ratio']:.2f}x, goal <= 0.6)   step {row['plain_s']:.2f} -> {row['checkpointed_s']:.2f} s "
              f"({row['time_ratio']:.2f}x)   weights identical after training: {row['same_weights']}", flush=True)
    columns = [("Attention", "{model}"), ("peak MiB without", "{plain_mib:.0f}"), ("with", "{checkpointed_mib:.0f}"),
               ("memory ratio", "{memory_ratio:.2f}x"), ("s/step without", "{plain_s:.2f}"),
               ("with", "{checkpointed_s:.2f}"), ("time ratio", "{time_ratio:.2f}x")]
    dense = next((r for r in rows if r["model"] == NAMES["naive"]), rows[0])
    record.save({"length": args.length, "dense_memory_ratio": dense["memory_ratio"],
                 "dense_time_ratio": dense["time_ratio"], "dense_model": dense["model"],
                 "worst_memory_ratio": max(r["memory_ratio"] for r in rows)},
                {"by_attention": record_table(columns, rows, title=f"Activation checkpointing at {args.length} tokens")},
                summary="At {length} tokens, activation checkpointing takes a training step of the text encoder "
                        "({dense_model}) to **{dense_memory_ratio:.2f}x** the peak memory (goal <= 0.6) for "
                        "{dense_time_ratio:.2f}x the time; the worst memory ratio over the attentions measured is "
                        "{worst_memory_ratio:.2f}x.")
    return 0 if all(r["same_weights"] for r in rows) else 1
