"""ACT batch shrinking: wall-clock per batch with halted examples removed vs masked, at equal ponder.

    python launch/bench.py act [--level per_example] [--mode train|eval] [--repeats 5]

The same UT+ACT model and batches run twice, interleaved: once keeping halted examples in the
batch until every example has halted (masking, as batched ACT implementations do), once
removing them (gather/scatter). Halting decisions, and so ponder, are identical by construction.
Masking costs B x max_b N_b example-steps per batch; shrinking costs sum_b N_b, so the ponder
saving is 1 - sum N / (B max N). Printed: the wall-clock saving, the ponder saving, and their
ratio (goal >= 0.8: the saved steps really turn into saved time).
"""
from __future__ import annotations

import argparse
import time

import torch

from launch.benchmarks._record import Record, table
from launch.benchmarks._timing import interleaved


def build(args: argparse.Namespace):
    from models.universal import UniversalTransformerClassifier
    torch.manual_seed(0)
    model = UniversalTransformerClassifier(vocab_size=args.length, num_classes=args.length, max_len=args.length,
                                           d_model=args.d_model, num_heads=4, max_steps=args.max_steps, act=True,
                                           halting_level=args.level)
    halting = model.encoder.recurrent.act.halting
    with torch.no_grad():
        # An untrained halting unit stops every example at the same step; this one reads the
        # state so that examples halt anywhere from the first step to the last.
        halting.weight.normal_(0.0, args.spread)
        halting.bias.fill_(args.bias)
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, args.length, (args.batch, args.length), generator=generator)
               for _ in range(args.batches)]
    return model, batches


def timed(model, batches, shrink: bool, train: bool) -> float:
    """Seconds per batch (forward, plus backward when training)."""
    model.encoder.recurrent.act.shrink_batch = shrink
    model.train(train)
    start = time.perf_counter()
    for tokens in batches:
        if train:
            output = model(tokens)
            (output["logits"].logsumexp(-1).mean() + output["aux_loss"]).backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model(tokens)
    return (time.perf_counter() - start) / len(batches)


def ponder_saving(model, batches) -> tuple[float, torch.Tensor]:
    """1 - sum_b N_b / (B max_b N_b), pooled over batches, and all per-example step counts."""
    model.eval()
    used = wasted = 0.0
    counts = []
    with torch.no_grad():
        for tokens in batches:
            steps = model(tokens)["ponder_map"].max(dim=1).values  # an example runs until its last position halts
            used += float(steps.sum())
            wasted += float(steps.max()) * len(steps)
            counts.append(steps)
    return 1.0 - used / wasted, torch.cat(counts)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", default="per_example", choices=["per_example", "per_token"])
    parser.add_argument("--mode", default="train", choices=["train", "eval"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--spread", type=float, default=3.0, help="std of the halting unit's weights")
    parser.add_argument("--bias", type=float, default=-2.0, help="the halting unit's bias")
    record = Record(__name__, parser, argv)
    args = record.args
    model, batches = build(args)
    saving, steps = ponder_saving(model, batches)
    train = args.mode == "train"
    timed(model, batches[:1], True, train)  # warm-up
    seconds = interleaved({"masked": lambda: timed(model, batches, False, train),
                           "shrunk": lambda: timed(model, batches, True, train)}, args.repeats)
    wall = 1.0 - seconds["shrunk"] / seconds["masked"]
    histogram = torch.bincount(steps.long(), minlength=args.max_steps + 1)[1:].tolist()
    print(f"threads: {torch.get_num_threads()}, {args.level} halting, {args.mode}, batch {args.batch}, "
          f"length {args.length}, d_model {args.d_model}, max_steps {args.max_steps}, "
          f"{args.batches} batches x {args.repeats} repeats")
    print(f"examples halting at steps 1..{args.max_steps}: {histogram} (mean {steps.mean():.2f})")
    print(f"masked (halted examples stay in the batch): {seconds['masked'] * 1e3:8.1f} ms/batch")
    print(f"shrunk (halted examples removed)          : {seconds['shrunk'] * 1e3:8.1f} ms/batch")
    ratio = wall / saving if saving > 0 else float("nan")
    print(f"wall-clock saving {wall:.3f}, ponder saving {saving:.3f}, ratio {ratio:.3f}   (goal >= 0.8)")
    rows = [{"how": "masked (halted examples stay in the batch)", "ms": seconds["masked"] * 1e3},
            {"how": "shrunk (halted examples removed)", "ms": seconds["shrunk"] * 1e3}]
    record.save({"masked_ms": seconds["masked"] * 1e3, "shrunk_ms": seconds["shrunk"] * 1e3, "wall_saving": wall,
                 "ponder_saving": saving, "ratio": ratio, "mean_steps": float(steps.mean()),
                 "halting_histogram": " ".join(map(str, histogram)), "max_steps": args.max_steps},
                {"batches": table([("halted examples", "{how}"), ("ms / batch", "{ms:.1f}")], rows)},
                summary="ACT batch shrinking: {shrunk_ms:.1f} vs {masked_ms:.1f} ms per batch, wall-clock saving "
                        "{wall_saving:.3f} / ponder saving {ponder_saving:.3f} = **{ratio:.3f}** (goal >= 0.8; "
                        "examples halting at steps 1..{max_steps}: {halting_histogram}, mean {mean_steps:.2f}).")
    return 0
