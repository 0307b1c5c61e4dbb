"""Architectures at one matched parameter count: training steps/s and memory, relative to vanilla.

Each architecture of gin/scaling/arch/ gets the d_model (a multiple of 8; 2/2 layers, about
d_model / 16 heads of 16, d_ff = 4 d_model)
whose non-embedding parameter count is closest to --params; every model then trains on the same
span-corruption batch in this process, interleaved, median of --repeats. Memory is counted, not
sampled: parameters + gradients + AdamW moments (16 bytes per parameter) plus the bytes autograd
saves for the backward pass, and the CUDA allocator's peak when run on a GPU.

    python launch/bench.py archs [--params 200000] [--batch 16] [--length 32] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from engine.config import REPO_ROOT
from launch.benchmarks._record import Record, table
from launch.benchmarks._timing import interleaved

ARCH_DIR = os.path.join(REPO_ROOT, "gin", "scaling", "arch")


def architectures() -> list[str]:
    names = sorted(f[:-4] for f in os.listdir(ARCH_DIR) if f.endswith(".gin"))
    return ["vanilla"] + [n for n in names if n != "vanilla"]


def configure(arch: str, d_model: int, length: int) -> None:
    from engine import config
    config.import_packages()
    config.reset()
    config.parse([os.path.join(REPO_ROOT, "gin", "scaling", "t5_span.gin"), os.path.join(ARCH_DIR, f"{arch}.gin")],
                 [f"T5.d_model = {d_model}", f"T5.d_ff = {4 * d_model}", "T5.d_kv = 16",
                  f"T5.num_heads = {max(1, round(d_model / 16))}", "T5.encoder_layers = 2", "T5.decoder_layers = 2",
                  f"SpanCorruption.length = {length}", f"T5.max_input_length = {length}"])


def non_embedding(model: torch.nn.Module) -> int:
    from engine.analysis import count_parameters
    return count_parameters(model) - model.embedding.table.weight.numel()


def matched_model(arch: str, target: int, length: int):
    """(d_model, model, task) for the width whose non-embedding count is closest to `target`."""
    import gin
    from models.t5 import T5
    best = None
    for d_model in range(16, 513, 8):
        configure(arch, d_model, length)
        try:
            with torch.device("meta"):  # counting needs shapes only
                count = non_embedding(T5())
        except RuntimeError:  # a layer that reads a tensor's value when built (Performer's feature seed)
            count = non_embedding(T5())
        if best is None or abs(count - target) < abs(best[1] - target):
            best = (d_model, count)
    configure(arch, best[0], length)
    torch.manual_seed(0)
    return best[0], T5(), gin.get_configurable("SpanCorruption")()


def saved_activation_bytes(model, task, batch) -> int:
    """Bytes autograd keeps for the backward pass of one training forward (parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params and storage.device.type != "meta":
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss, _ = task.loss(model, batch)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values())


def steps_per_second(model, task, batch, steps: int, warm: int, device: torch.device) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        loss, _ = task.loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    for _ in range(warm):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps / (time.perf_counter() - start)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=200_000, help="target non-embedding parameters")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=32, help="words per document before corruption")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warm", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    record = Record(__name__, parser, argv)
    args = record.args
    from engine.data import to_device
    from engine.data import Shard
    device = torch.device(args.device)
    built = {}
    for arch in architectures():
        d_model, model, task = matched_model(arch, args.params, args.length)
        batch = to_device(next(task.batches("train", Shard(batch_size=args.batch))), device)
        model = model.to(device)
        built[arch] = (d_model, model, task, batch)
    rates = interleaved({arch: (lambda m=m, t=t, b=b: steps_per_second(m, t, b, args.steps, args.warm, device))
                         for arch, (_, m, t, b) in built.items()}, args.repeats)
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch}, documents of "
          f"{args.length} words, target {args.params:,} non-embedding parameters, "
          f"{args.steps} timed steps x {args.repeats} (median)")
    header = (f"{'architecture':<12} {'d_model':>7} {'non-emb':>9} {'steps/s':>8} {'vs vanilla':>10} "
              f"{'activations MB':>14} {'train memory MB':>15} {'vs vanilla':>10}")
    if device.type == "cuda":
        header += f" {'CUDA peak MB':>12}"
    print(header)
    base_memory = None
    rows = []
    for arch, (d_model, model, task, batch) in built.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        activations = saved_activation_bytes(model, task, batch)
        memory = 16 * sum(p.numel() for p in model.parameters()) + activations
        base_memory = base_memory or memory
        line = (f"{arch:<12} {d_model:>7} {non_embedding(model):>9,} {rates[arch]:>8.2f} "
                f"{rates[arch] / rates['vanilla']:>10.2f} {activations / 2**20:>14.2f} {memory / 2**20:>15.2f} "
                f"{memory / base_memory:>10.2f}")
        row = {"arch": arch, "d_model": d_model, "non_embedding": non_embedding(model), "steps_per_s": rates[arch],
               "speed_vs_vanilla": rates[arch] / rates["vanilla"], "activations_mb": activations / 2**20,
               "memory_mb": memory / 2**20, "memory_vs_vanilla": memory / base_memory}
        if device.type == "cuda":
            row["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            line += f" {row['cuda_peak_mb']:>12.1f}"
        print(line)
        rows.append(row)
    columns = [("architecture", "{arch}"), ("d_model", "{d_model}"), ("non-embedding", "{non_embedding:,}"),
               ("steps/s", "{steps_per_s:.2f}"), ("vs vanilla", "{speed_vs_vanilla:.2f}"),
               ("activations MB", "{activations_mb:.2f}"), ("train memory MB", "{memory_mb:.2f}"),
               ("vs vanilla", "{memory_vs_vanilla:.2f}")]
    if device.type == "cuda":
        columns.append(("CUDA peak MB", "{cuda_peak_mb:.1f}"))
    record.save({"params": args.params, "batch": args.batch, "length": args.length, "device": str(device)},
                {"architectures": table(columns, rows)})
    return 0
