"""LRA speed and memory (paper Table 2): training steps/s and peak memory of the byte-level text
encoder per attention variant and length, as ratios to a naive softmax baseline and to SDPA;
with --peers, our attention layers against the public PyTorch packages of the same mechanisms.

    python launch/bench.py attention                  # Table 2: 1K-4K tokens, one CPU thread
    python launch/bench.py attention --peers          # ours vs the peer packages at 1K and 4K, 2 threads
    pip install -e '.[peers]'                         # the peer packages (setup.py pins them)

At the default options a run writes results/bench/attention.json and attention.png (Table 2) or
results/bench/attention_peers.json (--peers); other options write only where --out says.

**How it measures.** Memory and time are measured in separate phases of one process, memory
first. Memory is the peak resident set size (VmHWM, reset through /proc/self/clear_refs) above the
resident size just before the measured step, with glibc's mmap threshold at 128 KiB so that every
tensor is its own mapping and leaves the resident set when freed (a 64 MiB temporary reads as 64
MiB). Time is then taken with the threshold at glibc's own 32 MiB ceiling and no trimming, so freed
tensors are reused as in an ordinary run instead of being faulted in afresh each step (with the 128
KiB threshold, page faults were well over half of a linear-attention pass). Every cell gets
`--warmup` untimed steps and then `--steps` timed ones, interleaved step by step with the other
variants (or with the peer), so machine noise hits them alike. The load average (os.getloadavg)
is printed and recorded at the start, after each length or comparison, and at the end: on a busy
machine, trust ratios and spreads, not absolute times.

**Table 2.** Every variant is built from its gin/lra/attention/<name>.gin. A cell shows the median
steps/s, the range [slowest, fastest] of its timed steps, and its ratio to the baseline's median;
memory is the growth during the first training step of a fresh model: activations, gradients and
Adam state, not the parameters.

**Peers (--peers).** For each mechanism with a public PyTorch package, our self-attention layer
(MultiHeadAttention with the core and settings of gin/lra/attention/<name>.gin) and the package's
self-attention layer get the same input (batch 2, 1K and 4K tokens, width 256, 4 heads of 64) and
take a forward and a backward pass (gradients of the parameters for a fixed random output
gradient); the time is the median over `--steps` passes, ours/peer the median of the per-pair
ratios (with their interquartile range), and memory the peak resident growth of one pass after a
first one (gradients freed before it). Only the attention layer is timed, not an encoder around it.
Ours has biases on all four projections, as in the encoder; a package layer whose q/k/v
projections have none gets them (same weights, `with_biases`), so both project alike. Where a
package cannot compute exactly what ours does, it is set up to do the closest thing at the same
cost:

- naive softmax: `torch.nn.MultiheadAttention` with `need_weights=True` (its explicit path, which
  materialises the L x L weights like NaiveSoftmaxAttention); its q/k/v projection is one packed
  matrix where ours has three. This row calibrates the harness: it should read about 1.0x.
- linear (linear-attention-transformer `SelfAttention`): the package's non-causal attention is
  "efficient attention" (softmax of q over features, of k over positions, no normaliser), not
  elu(x) + 1 features with a normaliser; the same O(L d^2) products.
- Sinkhorn (sinkhorn-transformer `SinkhornSelfAttention`, bucket 50 as ours, temperature 1): its
  sort net scores blocks by mean(q) . mean(k) and keeps the top-1 block of a softmax
  (`non_permutative`, the package default) where ours maps summed keys through a linear layer and
  mixes all blocks by the softmax; both mix key blocks with a dense (blocks x blocks) matrix. The
  package needs a multiple of 50 tokens: both layers get the input padded to one (1050, 4100) with
  a key mask. Version 0.11.4 mixes the *keys* into the sorted value blocks (`b_v_r = b_k_r`), which
  spares it one of our two mixing products.
- Linformer (linformer `LinformerSelfAttention`, k = 16): `share_kv=False` (separate key and value
  projections and length projections E, F); ours shares E = F as LRA does, the package's `share_kv`
  would make the values equal the keys.
- Performer (performer-pytorch `SelfAttention`, 256 orthogonal features, `qkv_bias`): the package
  adds 1e-4 to every feature and has no eps in the normaliser; neither layer redraws its features
  inside the timed passes (ours redraws at an optimizer step, and none is taken).
- Reformer (reformer-pytorch `LSHSelfAttention`, 1 hash round, buckets of 64 tokens = our chunk
  length): the package's bucket count is L / 64 (16 at 1K, 64 at 4K) where ours hashes into 10
  buckets and chunks the sorted sequence by 64, and its first chunk looks back to the last one.
- local (local-attention `LocalAttention`, window 50, no look-back or look-ahead, autopad): a core
  only, so it runs inside our MultiHeadAttention (same projections), with a key mask so that its
  padding is masked as ours is.

A package that is not installed (or fails to import) is skipped with a message.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from engine import memory
from engine.config import GIN_DIR
from launch.benchmarks._record import BENCH_DIR, Record, load_average
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
# Defaults that differ between the two modes (None on the command line = the mode's own).
TABLE_DEFAULTS = dict(lengths="1024,2048,3072,4096", variants=",".join(VARIANTS), batch=1, steps=5, threads=1)
PEER_DEFAULTS = dict(lengths="1024,4096", batch=2, steps=15, threads=2)


def kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def allocator(measuring: bool) -> None:
    """Set glibc's malloc for measuring memory or for timing (both process-wide).

    Measuring: every block of 128 KiB or more gets its own mmap and goes back to the system when
    freed, so the peak resident set counts each live tensor. Timing: the mmap threshold at 32 MiB
    (the ceiling to which glibc's own adaptive threshold rises as a program frees large blocks) and
    no trimming, so freed tensors are reused as in an ordinary run; with the 128 KiB threshold every
    step would fault its tensors' pages in afresh, which took well over half of a linear-attention
    pass. A heap grown while timing serves later blocks from its free lists, so measure memory first.
    """
    memory.set_malloc(128 * 1024 if measuring else 32 * 1024 * 1024, 128 * 1024 if measuring else 1024 * 1024 * 1024)


class PeakMemory:
    """Peak resident memory above the resident size at entry, in MiB (Linux)."""

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        memory.trim()
        self.start = kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset VmHWM to the current resident size
        return self

    def __exit__(self, *exc) -> None:
        self.mib = (kib("VmHWM") - self.start) / 1024


@dataclass(frozen=True)
class Spread:
    """A cell's timed samples (seconds), summarised."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def quartiles(self) -> tuple[float, float]:
        if len(self.samples) < 2:
            return self.samples[0], self.samples[0]
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q1, q3


# --- Table 2: the text encoder per variant ------------------------------------------------------

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


def batch_of(length: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(length)
    return (torch.randint(0, 256, (batch, length), generator=generator),
            torch.randint(0, 2, (batch,), generator=generator))


def measure_memory(variants: list[str], length: int, batch: int) -> dict[str, float]:
    """{variant: peak MiB of its first training step} (gradients and Adam state are allocated there).

    Call with allocator(measuring=True), before anything has been timed in this process: a heap
    grown while timing serves later blocks from its free lists and blurs the count."""
    tokens, labels = batch_of(length, batch)
    memory = {}
    for name in variants:
        model, optimizer = build(name, length)
        with PeakMemory() as peak:
            train_step(model, optimizer, tokens, labels)
        memory[name] = peak.mib
        del model, optimizer
    return memory


def measure(variants: list[str], length: int, batch: int, steps: int, warmup: int = 1) -> dict[str, Spread]:
    """{variant: seconds of its timed steps} at one length: all variants built, then `warmup`
    untimed and `steps` timed steps, interleaved step by step across variants."""
    tokens, labels = batch_of(length, batch)
    built = {name: build(name, length) for name in variants}
    for _ in range(warmup):
        for model, optimizer in built.values():
            train_step(model, optimizer, tokens, labels)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(steps):
        for name, (model, optimizer) in built.items():
            times[name].append(train_step(model, optimizer, tokens, labels))
    return {name: Spread(tuple(times[name])) for name in variants}


def length_label(n: int) -> str:
    return f"{n // 1024}K" if n % 1024 == 0 else str(n)


def speed_cell(spread: Spread, baseline: Spread) -> str:
    """Median steps/s, [slowest, fastest] of the timed steps, and the ratio to the baseline's median."""
    return (f"{1 / spread.median:.3f} [{1 / max(spread.samples):.3f}, {1 / min(spread.samples):.3f}] "
            f"({baseline.median / spread.median:.1f}x)")


def table(results: dict[int, dict[str, tuple[Spread, float]]], baseline: str) -> str:
    """Markdown in the paper's layout: steps/s (x baseline) per length, then memory (x baseline)."""
    lengths = sorted(results)
    head = ["Model"] + [f"{length_label(n)} steps/s" for n in lengths] + [f"{length_label(n)} MiB" for n in lengths]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in results[lengths[0]]:
        speed = [speed_cell(results[n][name][0], results[n][baseline][0]) for n in lengths]
        memory = [f"{results[n][name][1]:.0f} ({results[n][name][1] / results[n][baseline][1]:.2f}x)" for n in lengths]
        lines.append("| " + " | ".join([NAMES.get(name, name)] + speed + memory) + " |")
    return "\n".join(lines)


def plot(results: dict[int, dict[str, tuple[Spread, float]]], path: str) -> None:
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
        speed.plot(lengths, [results[n]["naive"][0].median / results[n][name][0].median for n in lengths], **style)
        memory.plot(lengths, [results[n][name][1] / results[n]["naive"][1] for n in lengths], **style)
    speed.set(xlabel="sequence length", ylabel="training steps/s relative to naive", yscale="log",
              title="Speed-up over naive softmax attention")
    memory.set(xlabel="sequence length", ylabel="peak memory relative to naive", yscale="log",
               title="Memory relative to naive softmax attention")
    speed.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def recorded_table(results: dict[int, dict[str, tuple[Spread, float]]], baseline: str) -> dict:
    """`table()`'s layout for the record: one row per variant with its numbers, spread and ratios."""
    lengths = sorted(results)
    rows = []
    for name in results[lengths[0]]:
        row = {"model": NAMES.get(name, name)}
        for n in lengths:
            spread, memory = results[n][name]
            q1, q3 = spread.quartiles()
            row.update({f"speed_{n}": 1 / spread.median, f"speed_min_{n}": 1 / max(spread.samples),
                        f"speed_max_{n}": 1 / min(spread.samples), f"speed_q1_{n}": 1 / q3, f"speed_q3_{n}": 1 / q1,
                        f"step_seconds_{n}": list(spread.samples),
                        f"speed_ratio_{n}": results[n][baseline][0].median / spread.median,
                        f"mib_{n}": memory, f"mib_ratio_{n}": memory / results[n][baseline][1]})
        rows.append(row)
    columns = [("Model", "{model}")]
    columns += [(f"{length_label(n)} steps/s", f"{{speed_{n}:.3f}} [{{speed_min_{n}:.3f}}, {{speed_max_{n}:.3f}}] "
                                               f"({{speed_ratio_{n}:.1f}}x)") for n in lengths]
    columns += [(f"{length_label(n)} MiB", f"{{mib_{n}:.0f}} ({{mib_ratio_{n}:.2f}}x)") for n in lengths]
    return record_table(columns, rows, title=f"Ratios to {NAMES[baseline]}")


# The paper's Table 2 at 4K against its softmax Transformer: Linformer, Local, Linear and Performer
# 5.3-5.7x as fast with 0.10-0.30x the memory, Sinkhorn 3.8x. The goals taken from it:
FAST_CORES = ("linformer", "local", "linear", "performer", "performer_relu")
GOALS = {"speed": 5.0, "memory": 0.2, "sinkhorn_speed": 3.5}


def goal_figures(vs_naive: dict) -> tuple[dict, str]:
    """The figures and summary sentence of a Table 2 record: at its longest length, the fast cores'
    speed and memory ratios to naive softmax (range), Sinkhorn's speed and SDPA's, each against
    its goal (`GOALS`); computed from the record's own `vs_naive` table."""
    rows = {row["model"]: row for row in vs_naive["rows"]}
    longest = max(int(key.rsplit("_", 1)[1]) for key in next(iter(rows.values())) if key.startswith("speed_ratio_"))

    def ratio(name: str, what: str) -> float | None:
        row = rows.get(NAMES[name])
        return None if row is None else row[f"{what}_ratio_{longest}"]
    fast = [NAMES[n] for n in FAST_CORES if NAMES[n] in rows]
    speeds = [rows[n][f"speed_ratio_{longest}"] for n in fast]
    memories = [rows[n][f"mib_ratio_{longest}"] for n in fast]
    figures = {"length": length_label(longest), "fast_speed_low": min(speeds), "fast_speed_high": max(speeds),
               "fast_memory_low": min(memories), "fast_memory_high": max(memories),
               "sdpa_speed": ratio("sdpa", "speed"), "sdpa_memory": ratio("sdpa", "mib"),
               "speed_goal": "met" if min(speeds) >= GOALS["speed"] else "not met",
               "memory_goal": "met" if max(memories) <= GOALS["memory"] else "not met"}
    summary = ("At {length} tokens, against naive softmax attention: Linformer, Local, Linear and Performer (FAVOR+ "
               "and ReLU) run {fast_speed_low:.1f}-{fast_speed_high:.1f}x as fast (goal >= 5x, from the paper's "
               "5.3-5.7x: {speed_goal}) with {fast_memory_low:.2f}-{fast_memory_high:.2f}x its memory (goal <= 0.2x: "
               "{memory_goal}); PyTorch's SDPA, which never stores the L x L matrix, runs {sdpa_speed:.1f}x as fast "
               "with {sdpa_memory:.2f}x the memory.")
    sinkhorn = ratio("sinkhorn", "speed")
    if sinkhorn is not None:
        figures.update(sinkhorn_speed=sinkhorn,
                       sinkhorn_goal="met" if sinkhorn >= GOALS["sinkhorn_speed"] else "not met")
        summary += " Sinkhorn runs {sinkhorn_speed:.1f}x as fast (goal >= 3.5x, from the paper's 3.8x: {sinkhorn_goal})."
    return figures, summary


def run_table(args, record: Record, argv: list[str]) -> int:
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or "naive" not in variants or "sdpa" not in variants:
        record.parser.error(f"variants must include naive and sdpa and come from {VARIANTS}; unknown: {unknown}")
    from engine import config
    config.import_packages()
    lengths = [int(n) for n in args.lengths.split(",")]
    results, loads = {}, {}
    begin = time.perf_counter()
    print(f"load average at start: {load_average()}", flush=True)
    allocator(measuring=True)  # all memory first: see measure_memory
    measure_memory(variants, 16, args.batch)  # one-time costs of the first step (libraries' buffers) go here
    memory = {length: measure_memory(variants, length, args.batch) for length in lengths}
    print(f"  memory done at {time.perf_counter() - begin:.0f} s", flush=True)
    allocator(measuring=False)
    for length in lengths:
        times = measure(variants, length, args.batch, args.steps, args.warmup)
        results[length] = {name: (times[name], memory[length][name]) for name in variants}
        loads[length] = load_average()
        print(f"  length {length} done at {time.perf_counter() - begin:.0f} s, load average {loads[length]}",
              flush=True)
    setting = (f"text encoder (4 layers, d 256, 4 heads, MLP 1024), batch {args.batch}, {args.threads} thread(s), "
               f"median steps/s of {args.steps} timed training step(s) after {args.warmup} warm-up step(s), "
               f"[slowest, fastest] step in brackets; memory = peak RSS growth in the first step; "
               f"load average (1, 5, 15 min) at start {record.load_start}, at the end {load_average()} "
               f"on {os.cpu_count()} CPUs")
    report = (f"{setting}\n\nRatios to the naive softmax baseline (the paper's):\n\n{table(results, 'naive')}\n\n"
              f"Ratios to PyTorch SDPA:\n\n{table(results, 'sdpa')}\n")
    print(report)
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(f"`python launch/bench.py attention {' '.join(argv)}`\n\n{report}")
    # The figure goes beside the record (results/bench/attention.png at the default options).
    figure = args.plot or (os.path.splitext(record.path())[0] + ".png" if record.path() else None)
    if figure:
        plot(results, figure)
    tables = {f"vs_{baseline}": recorded_table(results, baseline) for baseline in ("naive", "sdpa")}
    goals, summary = goal_figures(tables["vs_naive"])
    figures = {"batch": args.batch, "steps": args.steps, "warmup": args.warmup, **goals}
    figures.update({f"load_after_{n}": loads[n][0] if loads[n] else None for n in loads})
    print(summary.format(**figures))
    record.save(figures, tables, summary)
    return 0


# --- Peers: our attention layer against the public packages ----------------------------------

class PeerLayer(nn.Module):
    """A package's self-attention layer behind one signature: `forward(x, mask)`, mask (batch,
    length) True at real tokens or None."""

    def __init__(self, layer: nn.Module, call: Callable[[nn.Module, torch.Tensor, torch.Tensor | None], torch.Tensor]):
        super().__init__()
        self.layer, self.call = layer, call

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.call(self.layer, x, mask)


class PeerCore(nn.Module):
    """A package's attention core (q, k, v per head) as one of our cores, to run inside our
    MultiHeadAttention with our projections."""

    def __init__(self, core: nn.Module, call: Callable[..., torch.Tensor]):
        super().__init__()
        self.core, self.call = core, call

    def forward(self, q, k, v, key_mask=None):
        return self.call(self.core, q, k, v, key_mask)


def with_biases(layer: nn.Module, *names: str) -> nn.Module:
    """Give the package layer's bias-free input projections `names` biases, as ours has (same
    weights, biases initialised as nn.Linear does), so that both layers project alike."""
    for name in names:
        old = getattr(layer, name)
        new = nn.Linear(old.in_features, old.out_features, bias=True)
        with torch.no_grad():
            new.weight.copy_(old.weight)
        setattr(layer, name, new)
    return layer


def peer_naive(length: int, dim: int, heads: int) -> nn.Module:
    layer = nn.MultiheadAttention(dim, heads, batch_first=True)

    def call(layer, x, mask):
        padding = None if mask is None else ~mask
        return layer(x, x, x, key_padding_mask=padding, need_weights=True, average_attn_weights=False)[0]
    return PeerLayer(layer, call)


def peer_linear(length: int, dim: int, heads: int) -> nn.Module:
    from linear_attention_transformer.linear_attention_transformer import SelfAttention
    layer = with_biases(SelfAttention(dim, heads), "to_q", "to_k", "to_v")
    return PeerLayer(layer, lambda layer, x, mask: layer(x, input_mask=mask))


def peer_sinkhorn(length: int, dim: int, heads: int) -> nn.Module:
    from sinkhorn_transformer.sinkhorn_transformer import SinkhornSelfAttention
    layer = SinkhornSelfAttention(dim, bucket_size=50, max_seq_len=length, heads=heads, non_permutative=True,
                                  temperature=1.0)
    with_biases(layer, "to_q", "to_kv")
    return PeerLayer(layer, lambda layer, x, mask: layer(x, input_mask=mask))


def peer_linformer(length: int, dim: int, heads: int) -> nn.Module:
    from linformer import LinformerSelfAttention
    layer = with_biases(LinformerSelfAttention(dim, seq_len=length, k=16, heads=heads, share_kv=False),
                        "to_q", "to_k", "to_v")
    return PeerLayer(layer, lambda layer, x, mask: layer(x))


def peer_performer(length: int, dim: int, heads: int) -> nn.Module:
    from performer_pytorch import SelfAttention
    layer = SelfAttention(dim=dim, heads=heads, dim_head=dim // heads, nb_features=256, qkv_bias=True)
    return PeerLayer(layer, lambda layer, x, mask: layer(x, mask=mask))


def peer_reformer(length: int, dim: int, heads: int) -> nn.Module:
    from reformer_pytorch import LSHSelfAttention
    layer = with_biases(LSHSelfAttention(dim, heads=heads, bucket_size=64, n_hashes=1, causal=False), "toqk", "tov")
    return PeerLayer(layer, lambda layer, x, mask: layer(x, input_mask=mask))


def peer_local(length: int, dim: int, heads: int) -> nn.Module:
    from local_attention import LocalAttention as PackageLocal

    from models.layers.attention import MultiHeadAttention

    def call(core, q, k, v, key_mask):
        if key_mask is None:  # mask the autopad padding, as ours does
            key_mask = torch.ones(q.shape[0], q.shape[2], dtype=torch.bool, device=q.device)
        return core(q, k, v, input_mask=key_mask)

    def factory(num_heads: int, head_dim: int) -> nn.Module:
        return PeerCore(PackageLocal(window_size=50, causal=False, look_backward=0, look_forward=0, autopad=True), call)
    return PeerLayer(MultiHeadAttention(dim, heads, attention=factory), lambda layer, x, mask: layer(x, mask))


@dataclass(frozen=True)
class Peer:
    """One mechanism: our gin/lra/attention/<variant>.gin against `package`'s layer."""

    variant: str
    label: str
    package: str   # the distribution to install (pip), '' for torch itself
    module: str    # what must import
    multiple: int  # both layers get inputs padded (with a key mask) to a multiple of this
    build: Callable[[int, int, int], nn.Module]


PEERS = (
    Peer("naive", "softmax (naive)", "", "torch", 1, peer_naive),
    Peer("linear", "Linear Trans.", "linear-attention-transformer", "linear_attention_transformer", 1, peer_linear),
    Peer("sinkhorn", "Sinkhorn", "sinkhorn-transformer", "sinkhorn_transformer", 50, peer_sinkhorn),
    Peer("linformer", "Linformer", "linformer", "linformer", 1, peer_linformer),
    Peer("performer", "Performer (FAVOR+)", "performer-pytorch", "performer_pytorch", 1, peer_performer),
    Peer("reformer", "Reformer", "reformer-pytorch", "reformer_pytorch", 128, peer_reformer),
    Peer("local", "Local Attention", "local-attention", "local_attention", 1, peer_local),
)
PEER_NAMES = tuple(peer.variant for peer in PEERS)


def peer_version(peer: Peer) -> str:
    return torch.__version__ if not peer.package else importlib.metadata.version(peer.package)


def missing(peer: Peer) -> str | None:
    """Why `peer` cannot run here (its package does not import), or None."""
    try:
        importlib.import_module(peer.module)
    except Exception as error:  # an absent package, or one that breaks on import
        return f"{type(error).__name__}: {error}"
    return None


def ours(variant: str, length: int, dim: int, heads: int) -> nn.Module:
    """Our MultiHeadAttention with `variant`'s core and its gin/lra/attention settings."""
    from engine import config
    config.import_packages()
    config.reset()
    if variant == "naive":
        config.parse([], ["MultiHeadAttention.attention = @NaiveSoftmaxAttention", f"SEQ_LEN = {length}"])
    else:
        config.parse([os.path.join(ATTENTION_GIN, f"{variant}.gin")], [f"SEQ_LEN = {length}"])
    from models.layers.attention import MultiHeadAttention
    try:
        layer = MultiHeadAttention(dim, heads)
    finally:
        config.reset()
    return PeerLayer(layer, lambda layer, x, mask: layer(x, mask))


@dataclass
class Pair:
    """Both layers of one mechanism at one length, and the input they share."""

    peer: Peer
    ours: nn.Module
    theirs: nn.Module
    x: torch.Tensor
    mask: torch.Tensor | None
    grad: torch.Tensor
    length: int

    def step(self, which: str, zero_grad: bool = True) -> float:
        """One forward and backward pass of `ours` or `theirs`; returns its seconds."""
        layer = self.ours if which == "ours" else self.theirs
        if zero_grad:
            layer.zero_grad(set_to_none=True)
        with Stopwatch() as watch:
            out = layer(self.x, self.mask)
            out.backward(self.grad)
        return watch.seconds

    def outputs(self) -> dict[str, torch.Tensor]:
        """The real tokens' outputs of both layers (for checks)."""
        return {which: layer(self.x, self.mask)[:, :self.length] for which, layer in (("ours", self.ours),
                                                                                      ("theirs", self.theirs))}


def build_pair(peer: Peer, length: int, dim: int = 256, heads: int = 4, batch: int = 2) -> Pair:
    """Both layers in training mode, on one random input of `length` tokens, padded (key mask)
    to the peer's multiple when it needs one."""
    padded = -(-length // peer.multiple) * peer.multiple
    generator = torch.Generator().manual_seed(length)
    x = torch.randn(batch, padded, dim, generator=generator)
    mask = None
    if padded != length:
        mask = torch.zeros(batch, padded, dtype=torch.bool)
        mask[:, :length] = True
        x[:, length:] = 0.0
    grad = torch.randn(batch, padded, dim, generator=generator)
    torch.manual_seed(0)
    mine = ours(peer.variant, padded, dim, heads).train()
    torch.manual_seed(0)
    theirs = peer.build(padded, dim, heads).train()
    return Pair(peer, mine, theirs, x, mask, grad, length)


def pair_memory(pair: Pair) -> dict[str, float]:
    """Peak MiB of one pass of each layer (after a first pass, which builds what a layer builds
    once). Call with allocator(measuring=True), before anything has been timed in this process."""
    memory = {}
    for which in ("ours", "theirs"):
        pair.step(which)
        (pair.ours if which == "ours" else pair.theirs).zero_grad(set_to_none=True)  # freed before, not during
        with PeakMemory() as peak:
            pair.step(which, zero_grad=False)
        memory[which] = peak.mib
    return memory


def compare(pair: Pair, steps: int, warmup: int) -> dict[str, float | list[float]]:
    """Interleaved timing of the two layers: medians, samples and the per-pair ratio's quartiles."""
    for _ in range(warmup):
        pair.step("ours"), pair.step("theirs")
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for index in range(steps):  # alternate which goes first, so neither always follows the other
        order = ("ours", "theirs") if index % 2 == 0 else ("theirs", "ours")
        for which in order:
            times[which].append(pair.step(which))
    ratios = Spread(tuple(o / t for o, t in zip(times["ours"], times["theirs"])))
    q1, q3 = ratios.quartiles()
    return {"ours_ms": 1e3 * statistics.median(times["ours"]), "theirs_ms": 1e3 * statistics.median(times["theirs"]),
            "ours_ms_samples": [1e3 * t for t in times["ours"]],
            "theirs_ms_samples": [1e3 * t for t in times["theirs"]],
            "time_ratio": ratios.median, "time_ratio_q1": q1, "time_ratio_q3": q3}


def run_peers(args, record: "AttentionRecord", argv: list[str]) -> int:
    chosen = args.variants.split(",")
    unknown = sorted(set(chosen) - set(PEER_NAMES))
    if unknown:
        record.parser.error(f"--peers variants come from {PEER_NAMES}; unknown: {unknown}")
    lengths = [int(n) for n in args.lengths.split(",")]
    print(f"load average at start: {load_average()}", flush=True)
    present, skipped = [], []
    for peer in (p for p in PEERS if p.variant in chosen):
        why = missing(peer)
        if why is None:
            present.append(peer)
            continue
        message = f"skipped {peer.label}: {peer.package} is not importable ({why}); pip install -e '.[peers]'"
        print(message, flush=True)
        skipped.append(message)
    rows = {peer.variant: {"mechanism": peer.label,
                           "peer": f"{peer.package or 'torch.nn.MultiheadAttention'} {peer_version(peer)}"}
            for peer in present}
    allocator(measuring=True)  # all memory first: see pair_memory
    for peer in present:
        for length in lengths:
            memory = pair_memory(build_pair(peer, length, args.dim, args.heads, args.batch))
            rows[peer.variant].update({f"ours_mib_{length}": memory["ours"], f"theirs_mib_{length}": memory["theirs"],
                                       f"mib_ratio_{length}": memory["ours"] / memory["theirs"]
                                       if memory["theirs"] > 0 else float("nan")})
            print(f"  {peer.label} at {length}: memory ours {memory['ours']:.1f} MiB, peer {memory['theirs']:.1f} MiB",
                  flush=True)
    allocator(measuring=False)
    for peer in present:
        row = rows[peer.variant]
        for length in lengths:
            result = compare(build_pair(peer, length, args.dim, args.heads, args.batch), args.steps, args.warmup)
            row.update({f"{key}_{length}": value for key, value in result.items()})
            row[f"load_{length}"] = load_average()
            print(f"  {peer.label} at {length}: ours {result['ours_ms']:.1f} ms, peer {result['theirs_ms']:.1f} ms, "
                  f"ours/peer {result['time_ratio']:.2f}x "
                  f"[{result['time_ratio_q1']:.2f}, {result['time_ratio_q3']:.2f}]; "
                  f"load {row[f'load_{length}']}", flush=True)
    rows = list(rows.values())
    columns = [("mechanism", "{mechanism}"), ("peer", "{peer}")]
    for n in lengths:
        label = length_label(n)
        columns += [(f"{label} ours ms", f"{{ours_ms_{n}:.1f}}"), (f"{label} peer ms", f"{{theirs_ms_{n}:.1f}}"),
                    (f"{label} time ours/peer [IQR]",
                     f"{{time_ratio_{n}:.2f}}x [{{time_ratio_q1_{n}:.2f}}, {{time_ratio_q3_{n}:.2f}}]"),
                    (f"{label} MiB ours/peer",
                     f"{{ours_mib_{n}:.0f}} / {{theirs_mib_{n}:.0f}} ({{mib_ratio_{n}:.2f}}x)")]
    recorded = record_table(columns, rows, title="Our attention layers against the public packages")
    setting = (f"one self-attention layer, forward + backward, batch {args.batch}, width {args.dim}, "
               f"{args.heads} heads, "
               f"{args.threads} thread(s); median of {args.steps} interleaved passes after {args.warmup} warm-up "
               f"pass(es); ours/peer = median of the per-pair time ratios [interquartile range]; memory = peak RSS "
               f"growth of one pass; load average (1, 5, 15 min) at start {record.load_start}, at the end "
               f"{load_average()} on {os.cpu_count()} CPUs")
    report = f"{setting}\n\n{markdown(recorded)}\n"
    print(f"\n{report}")
    for message in skipped:
        print(message)
    if skipped:
        record.incomplete = f"{len(skipped)} peer(s) skipped"
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(f"`python launch/bench.py attention {' '.join(argv)}`\n\n{report}")
    record.save({"batch": args.batch, "steps": args.steps, "warmup": args.warmup, "skipped": "; ".join(skipped)},
                {"peers": recorded})
    return 0


def markdown(recorded: dict) -> str:
    """A recorded table as markdown (the layout launch/tables.py renders)."""
    head = [header for header, _ in recorded["columns"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in recorded["rows"]:
        lines.append("| " + " | ".join(template.format(**row) for _, template in recorded["columns"]) + " |")
    return "\n".join(lines)


class AttentionRecord(Record):
    """The Table 2 run's record is results/bench/attention.json; a --peers run's, at the peer
    defaults, results/bench/attention_peers.json."""

    def __init__(self, module: str, parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
        super().__init__(module, parser, argv)
        self.parser = parser
        if self.args.peers:
            defaults = vars(parser.parse_args(["--peers"]))
            self.at_defaults = all(defaults[k] == v for k, v in self.settings.items())
            self.file_name = f"{self.name}_peers.json"
        else:
            self.file_name = f"{self.name}.json"
        mode = PEER_DEFAULTS if self.args.peers else TABLE_DEFAULTS
        for key, value in mode.items():  # the mode's defaults for what the command line left out
            if getattr(self.args, key, None) is None:
                setattr(self.args, key, value)
        if self.args.peers and self.args.variants is None:
            self.args.variants = ",".join(PEER_NAMES)
        self.settings = {k: v for k, v in vars(self.args).items() if k not in ("out", "no_save")}
        self.incomplete = ""  # why the default record must not be replaced (a peer package was missing)

    def path(self) -> str | None:
        if self.args.no_save:
            return None
        if self.args.out:
            out = self.args.out
            return out if out.endswith(".json") else os.path.join(out, self.file_name)
        return os.path.join(BENCH_DIR, self.file_name) if self.at_defaults and not self.incomplete else None

    def save(self, figures, tables=None, summary: str = "") -> str | None:
        if self.path() is None and not self.args.no_save:
            why = self.incomplete or "options differ from the defaults"
            print(f"record not written: {why}; pass --out to keep it (results/bench/{self.file_name} is unchanged)",
                  file=sys.stderr)
            return None
        return super().save(figures, tables, summary)


def options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--peers", action="store_true",
                        help="time our attention layers against the public packages (pip install -e '.[peers]')")
    parser.add_argument("--lengths", help=f"default {TABLE_DEFAULTS['lengths']}; "
                                          f"with --peers {PEER_DEFAULTS['lengths']}")
    parser.add_argument("--variants", help="subset of " + ",".join(VARIANTS) + "; with --peers of "
                                           + ",".join(PEER_NAMES))
    parser.add_argument("--batch", type=int, help="default 1 (the paper's 32 per 16 TPU cores scaled to one CPU); "
                                                  "with --peers 2")
    parser.add_argument("--steps", type=int, help=f"timed steps per cell after the warm-up (default "
                                                  f"{TABLE_DEFAULTS['steps']}; with --peers {PEER_DEFAULTS['steps']})")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per cell before the timed ones")
    parser.add_argument("--threads", type=int, help="default 1; with --peers 2")
    parser.add_argument("--dim", type=int, default=256, help="--peers: the layer's width")
    parser.add_argument("--heads", type=int, default=4, help="--peers: its heads")
    parser.add_argument("--markdown", help="also write the tables to this file")
    parser.add_argument("--plot", help="write the PNG of steps/s and memory against length here (not with --peers; "
                                       "default: beside the record, when one is written)")
    return parser


def main(argv: list[str]) -> int:
    parser = options()
    record = AttentionRecord(__name__, parser, argv)
    args = record.args
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be >= 1")
    torch.set_num_threads(args.threads)
    if args.peers:
        return run_peers(args, record, argv)
    return run_table(args, record, argv)
