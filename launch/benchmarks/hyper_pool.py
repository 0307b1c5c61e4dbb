"""Hyper-UT: pool entries' generated weights held for a whole forward vs regenerated at every step.

    python launch/bench.py hyper_pool [--gin gin/hyperut/hyperut_pvr.gin] [--steps 20] [--repeats 5]

With a pool smaller than the embedding (K = 8 < d_embed = 32 in the flagship), each generated
layer builds W(E_k) for the K pool entries and mixes them per example. The parameters do not
change within a forward, so `HyperBlock.hold_pool_weights` (default on) generates them once per
recurrent pass instead of once per ACT step. The same model, batches and optimizer settings run
both ways, interleaved; printed: seconds per training step and their ratio (held / regenerated,
below 1 = faster). Results are identical either way (tests/models/test_hyperut.py).
"""
from __future__ import annotations

import argparse

import torch

from engine import config
from launch.benchmarks._record import Record, table
from launch.benchmarks._timing import interleaved, training_seconds
from launch.experiment import parsed_config


def timed(task, model, hold: bool, batch_size: int, steps: int) -> float:
    """Seconds per training step with the pool weights held (or not) across the steps of a forward."""
    model.encoder.recurrent.block.hold_pool_weights = hold
    torch.manual_seed(0)
    return training_seconds(task, model, batch_size, warm=2, steps=steps) / steps


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gin", default="gin/hyperut/hyperut_pvr.gin")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    record = Record(__name__, parser, argv)
    args = record.args
    with parsed_config([args.gin], []):
        torch.manual_seed(0)
        task, model = config.built("train.task"), config.built("train.model")
        batch_size = config.built("train.batch_size")
    seconds = interleaved({"regenerated": lambda: timed(task, model, False, batch_size, args.steps),
                           "held": lambda: timed(task, model, True, batch_size, args.steps)}, args.repeats)
    block = model.encoder.recurrent.block
    pool, max_steps = tuple(block.router.pool.shape), model.encoder.recurrent.max_steps
    ratio = seconds["held"] / seconds["regenerated"]
    print(f"threads: {torch.get_num_threads()}, {args.gin}, batch {batch_size}, pool {pool[0]} x "
          f"{pool[1]}, generated {', '.join(block.generate)}, max_steps "
          f"{max_steps}; {args.steps} steps x {args.repeats} repeats")
    print(f"regenerated at every ACT step: {seconds['regenerated'] * 1e3:8.1f} ms/step")
    print(f"held for the whole forward   : {seconds['held'] * 1e3:8.1f} ms/step")
    print(f"ratio held / regenerated {ratio:.3f}")
    rows = [{"how": "regenerated at every ACT step", "ms": seconds["regenerated"] * 1e3},
            {"how": "held for the whole forward", "ms": seconds["held"] * 1e3}]
    record.save({"regenerated_ms": seconds["regenerated"] * 1e3, "held_ms": seconds["held"] * 1e3, "ratio": ratio,
                 "batch_size": batch_size, "pool_entries": pool[0], "pool_width": pool[1],
                 "generated": ", ".join(block.generate), "max_steps": max_steps},
                {"steps": table([("pool weights", "{how}"), ("ms / training step", "{ms:.1f}")], rows)},
                summary="Flagship training step (batch {batch_size}, pool {pool_entries} x {pool_width}, generated "
                        "{generated}, up to {max_steps} steps): {held_ms:.1f} ms with the pool weights held for the "
                        "forward against {regenerated_ms:.1f} ms regenerated at every ACT step, ratio held / "
                        "regenerated **{ratio:.3f}**.")
    return 0
