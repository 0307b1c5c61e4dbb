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
    args = parser.parse_args(argv)
    with parsed_config([args.gin], []):
        torch.manual_seed(0)
        task, model = config.built("train.task"), config.built("train.model")
        batch_size = config.built("train.batch_size")
    seconds = interleaved({"regenerated": lambda: timed(task, model, False, batch_size, args.steps),
                           "held": lambda: timed(task, model, True, batch_size, args.steps)}, args.repeats)
    block = model.encoder.recurrent.block
    print(f"threads: {torch.get_num_threads()}, {args.gin}, batch {batch_size}, pool {block.router.pool.shape[0]} x "
          f"{block.router.pool.shape[1]}, generated {', '.join(block.generate)}, max_steps "
          f"{model.encoder.recurrent.max_steps}; {args.steps} steps x {args.repeats} repeats")
    print(f"regenerated at every ACT step: {seconds['regenerated'] * 1e3:8.1f} ms/step")
    print(f"held for the whole forward   : {seconds['held'] * 1e3:8.1f} ms/step")
    print(f"ratio held / regenerated {seconds['held'] / seconds['regenerated']:.3f}")
    return 0
