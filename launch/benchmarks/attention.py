"""LRA speed and memory (paper Table 2): training steps/s and peak memory of the byte-level text
encoder per attention variant and length, as ratios to a naive softmax baseline and to SDPA.

    python launch/bench.py attention --lengths 1024,2048,3072,4096    # ~15-20 min on one CPU thread

Every variant is built from its gin/lra/attention/<name>.gin; all of one length are timed in this
process, interleaved step by step, so machine noise hits them alike. Memory is the peak resident
set size (VmHWM, reset through /proc/self/clear_refs) above the resident size just before the first
training step: activations, gradients and Adam state, not the parameters. glibc's mmap threshold is
pinned so that freed tensors leave the resident set instead of being kept for reuse.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import time

import torch
import torch.nn.functional as F

from engine.config import GIN_DIR
from launch.benchmarks._record import Record
from launch.benchmarks._record import table as record_table
from launch.benchmarks._timing import Stopwatch

ATTENTION_GIN = os.path.join(GIN_DIR, "lra", "attention")
# The released text config (spec §2): bytes, 4 layers, width 256, 4 heads, MLP 1024, sinusoidal, CLS.
TEXT_ENCODER = dict(vocab_size=256, num_classes=2, d_model=256, num_heads=4, num_layers=4, d_ff=1024,
                    dropout=0.1, pooling="cls", positions="sinusoidal")
# Paper order first, then the variants the paper did not time (mask-emulated there, blockwise here).
VARIANTS = ("naive", "sdpa", "local", "linformer", "reformer", "sinkhorn", "synthesizer", "bigbird", "linear",
            "performer", "sparse", "longformer", "performer_relu")
NAMES = {"naive": "Transformer (naive)", "sdpa": "Transformer (SDPA)", "local": "Local Attention",
         "linformer": "Linformer", "reformer": "Reformer", "sinkhorn": "Sinkhorn", "synthesizer": "Synthesizer",
         "bigbird": "BigBird", "linear": "Linear Trans.", "performer": "Performer (FAVOR+)",
         "sparse": "Sparse Trans.", "longformer": "Longformer", "performer_relu": "Performer (ReLU)"}
M_MMAP_THRESHOLD = -3


def kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class PeakMemory:
    """Peak resident memory above the resident size at entry, in MiB (Linux)."""

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        self.start = kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset VmHWM to the current resident size
        return self

    def __exit__(self, *exc) -> None:
        self.mib = (kib("VmHWM") - self.start) / 1024


def build(name: str, length: int):
    """The text encoder with `name`'s attention; the task's SEQ_LEN is the byte length."""
    from engine import config
    config.reset()
    if name == "naive":
        config.parse([], ["MultiHeadAttention.attention = @NaiveSoftmaxAttention", f"SEQ_LEN = {length}"])
    else:
        gin_name = "dense" if name == "sdpa" else name
        config.parse([os.path.join(ATTENTION_GIN, f"{gin_name}.gin")], [f"SEQ_LEN = {length}"])
    from models.transformer import TransformerClassifier
    torch.manual_seed(0)
    model = TransformerClassifier(max_len=length, **TEXT_ENCODER).train()
    config.reset()  # the cores read their settings when built; nothing else should see this config
    return model, torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9)


def train_step(model, optimizer, tokens, labels) -> float:
    with Stopwatch() as watch:
        loss = F.cross_entropy(model(tokens)["logits"], labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return watch.seconds


def measure(variants: list[str], length: int, batch: int, steps: int) -> dict[str, tuple[float, float]]:
    """{variant: (steps/s, peak MiB)} at one length; steps interleaved across variants."""
    generator = torch.Generator().manual_seed(length)
    tokens = torch.randint(0, 256, (batch, length), generator=generator)
    labels = torch.randint(0, 2, (batch,), generator=generator)
    built = {name: build(name, length) for name in variants}
    memory = {}
    for name, (model, optimizer) in built.items():  # the first step allocates gradients and Adam state
        with PeakMemory() as peak:
            train_step(model, optimizer, tokens, labels)
        memory[name] = peak.mib
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(steps):
        for name, (model, optimizer) in built.items():
            times[name].append(train_step(model, optimizer, tokens, labels))
    return {name: (1.0 / statistics.median(times[name]), memory[name]) for name in variants}


def table(results: dict[int, dict[str, tuple[float, float]]], baseline: str) -> str:
    """Markdown in the paper's layout: steps/s (x baseline) per length, then memory (x baseline)."""
    lengths = sorted(results)
    head = ["Model"] + [f"{n // 1024}K steps/s" if n % 1024 == 0 else f"{n} steps/s" for n in lengths] \
        + [f"{n // 1024}K MiB" if n % 1024 == 0 else f"{n} MiB" for n in lengths]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in results[lengths[0]]:
        speed = [f"{results[n][name][0]:.3f} ({results[n][name][0] / results[n][baseline][0]:.1f}x)" for n in lengths]
        memory = [f"{results[n][name][1]:.0f} ({results[n][name][1] / results[n][baseline][1]:.2f}x)" for n in lengths]
        lines.append("| " + " | ".join([NAMES.get(name, name)] + speed + memory) + " |")
    return "\n".join(lines)


def plot(results: dict[int, dict[str, tuple[float, float]]], path: str) -> None:
    """Speed-up and memory ratio to the naive baseline against length (ratios survive machine noise)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lengths = sorted(results)
    colours = plt.get_cmap("tab20").colors
    figure, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    for index, name in enumerate(results[lengths[0]]):
        style = dict(color=colours[index % len(colours)], marker="os^vD<>ph*xP+"[index % 13],
                     linestyle="--" if name in ("naive", "sdpa") else "-", label=NAMES[name])
        speed.plot(lengths, [results[n][name][0] / results[n]["naive"][0] for n in lengths], **style)
        memory.plot(lengths, [results[n][name][1] / results[n]["naive"][1] for n in lengths], **style)
    speed.set(xlabel="sequence length", ylabel="training steps/s relative to naive", yscale="log",
              title="Speed-up over naive softmax attention")
    memory.set(xlabel="sequence length", ylabel="peak memory relative to naive", yscale="log",
               title="Memory relative to naive softmax attention")
    speed.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1024,2048,3072,4096")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="subset of " + ",".join(VARIANTS))
    parser.add_argument("--batch", type=int, default=1, help="the paper's 32 per 16 TPU cores scaled to one CPU")
    parser.add_argument("--steps", type=int, default=1,
                        help="timed steps per variant after the first (more = steadier, slower)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", help="also write the tables to this file")
    parser.add_argument("--plot", help="also write a PNG of steps/s and memory against length")
    record = Record(__name__, parser, argv)
    args = record.args
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or "naive" not in variants or "sdpa" not in variants:
        parser.error(f"variants must include naive and sdpa and come from {VARIANTS}; unknown: {unknown}")
    torch.set_num_threads(args.threads)
    ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 * 1024)  # freed tensors leave the resident set

    from engine import config
    config.import_packages()
    results = {}
    begin = time.perf_counter()
    for length in (int(n) for n in args.lengths.split(",")):
        results[length] = measure(variants, length, args.batch, args.steps)
        print(f"  length {length} done at {time.perf_counter() - begin:.0f} s", flush=True)
    setting = (f"text encoder (4 layers, d 256, 4 heads, MLP 1024), batch {args.batch}, {args.threads} thread(s), "
               f"median of {args.steps} timed training step(s) after the first; memory = peak RSS growth in the first step")
    report = (f"{setting}\n\nRatios to the naive softmax baseline (the paper's):\n\n{table(results, 'naive')}\n\n"
              f"Ratios to PyTorch SDPA:\n\n{table(results, 'sdpa')}\n")
    print(report)
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(f"`python launch/bench.py attention {' '.join(argv)}`\n\n{report}")
    if args.plot:
        plot(results, args.plot)
    record.save({"batch": args.batch, "steps": args.steps},
                {f"vs_{baseline}": recorded_table(results, baseline) for baseline in ("naive", "sdpa")})
    return 0


def recorded_table(results: dict[int, dict[str, tuple[float, float]]], baseline: str) -> dict:
    """`table()`'s layout for the record: one row per variant with its numbers and its ratios."""
    lengths = sorted(results)
    label = {n: f"{n // 1024}K" if n % 1024 == 0 else str(n) for n in lengths}
    rows = []
    for name in results[lengths[0]]:
        row = {"model": NAMES.get(name, name)}
        for n in lengths:
            speed, memory = results[n][name]
            row.update({f"speed_{n}": speed, f"speed_ratio_{n}": speed / results[n][baseline][0],
                        f"mib_{n}": memory, f"mib_ratio_{n}": memory / results[n][baseline][1]})
        rows.append(row)
    columns = [("Model", "{model}")]
    columns += [(f"{label[n]} steps/s", f"{{speed_{n}:.3f}} ({{speed_ratio_{n}:.1f}}x)") for n in lengths]
    columns += [(f"{label[n]} MiB", f"{{mib_{n}:.0f}} ({{mib_ratio_{n}:.2f}}x)") for n in lengths]
    return record_table(columns, rows, title=f"Ratios to {NAMES[baseline]}")
