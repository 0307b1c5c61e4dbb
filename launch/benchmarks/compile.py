"""torch.compile: steady-state steps/s of the engine's `train` with `train.compile = True` vs eager,
the one-off compile time, and whether the losses agree (to float tolerance: compiled kernels fuse
and reorder arithmetic).

    python launch/bench.py compile             # ~3 min on 2 CPU threads (Inductor's C++ backend)

The model is transformer_pvr's Transformer at a width where arithmetic outweighs Python
(`--d-model`, 4 layers, batch 64, C-PVR). Both runs happen in this process, alternating over
repeats; the compile time is the first run's warm-up minus the eager warm-up (Inductor caches
its kernels on disk, so later runs compile faster, as a user's second run would).
"""
from __future__ import annotations

import argparse
import math
import os
import time

import torch

from engine.config import GIN_DIR
from launch.benchmarks._record import Record
from launch.benchmarks._timing import engine_run, interleaved

GIN = os.path.join(GIN_DIR, "hyperut", "transformer_pvr.gin")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warm-steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    record = Record(__name__, parser, argv)
    args = record.args
    torch.set_num_threads(args.threads)
    from engine import config
    config.import_packages()
    config.reset()
    config.parse([GIN], [f"TransformerClassifier.d_model = {args.d_model}", f"train.batch_size = {args.batch}"])
    runs: dict[str, list[dict]] = {"eager": [], "compiled": []}

    def measure(name: str):
        def run() -> float:
            start = time.perf_counter()
            result = engine_run({"train.compile": name == "compiled"}, args.warm_steps, args.steps,
                                max(1, args.steps // 4))
            result["wall_s"] = time.perf_counter() - start
            runs[name].append(result)
            return result["steps_per_s"]
        return run

    rates = interleaved({"eager": measure("eager"), "compiled": measure("compiled")}, args.repeats)
    ratio = rates["compiled"] / rates["eager"]
    timed_s = {name: args.steps / rates[name] for name in rates}
    compile_s = max(0.0, (runs["compiled"][0]["wall_s"] - timed_s["compiled"])
                    - (runs["eager"][0]["wall_s"] - timed_s["eager"]))
    eager_losses = dict(runs["eager"][0]["losses"])
    agree = all(math.isclose(loss, eager_losses[step], rel_tol=1e-3, abs_tol=1e-4)
                for run in runs["compiled"] for step, loss in run["losses"])
    print(f"transformer_pvr at d_model {args.d_model}, batch {args.batch}, {torch.get_num_threads()} thread(s), "
          f"{args.steps} timed steps x {args.repeats}")
    print(f"eager    : {rates['eager']:8.2f} steps/s")
    print(f"compiled : {rates['compiled']:8.2f} steps/s   (first run spent ~{compile_s:.0f} s compiling)")
    print(f"ratio compiled/eager: {ratio:.3f}")
    print(f"losses agree (rel 1e-3): {agree}")
    record.save({"eager_steps_per_s": rates["eager"], "compiled_steps_per_s": rates["compiled"], "ratio": ratio,
                 "compile_s": compile_s, "d_model": args.d_model, "batch": args.batch,
                 "losses_agree": "yes" if agree else "NO"},
                summary="`train.compile = True` on transformer_pvr at d_model {d_model}, batch {batch}: "
                        "{compiled_steps_per_s:.2f} vs {eager_steps_per_s:.2f} steps/s eager, ratio **{ratio:.2f}**, "
                        "after about {compile_s:.0f} s of compiling; losses agree to 1e-3: {losses_agree}.")
    return 0 if agree else 1
