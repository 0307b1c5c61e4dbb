"""Engine overhead: steady-state steps/s of `train` vs a bare PyTorch loop, and start-up time.

Both loops run the same model (transformer_pvr shapes), optimizer, schedule, gradient clipping
and pre-generated batches in this process with the same threads; the ratio is engine / bare.
Goal: >= 0.97, and under 3 s from `main()` to the first step once imports are warm.
"""
from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time

import torch

from engine.config import GIN_DIR
from engine.task import Task
from launch.benchmarks._record import Record
from launch.benchmarks._timing import interleaved

GIN = os.path.join(GIN_DIR, "hyperut", "transformer_pvr.gin")


def build(warm_steps: int, steps: int):
    from engine import config
    from engine.data import Shard
    from tasks.pvr.vector import CPVR
    config.import_packages()
    config.reset()
    config.parse([GIN], [])
    import gin
    task = gin.get_configurable("CPVR")()
    batch_size = gin.query_parameter("train.batch_size")
    batches = list(itertools.islice(task.batches("train", Shard(batch_size=batch_size)), warm_steps + steps))
    return task, batch_size, batches


class FixedBatches(Task):
    """Wraps a task so `train` reads exactly the pre-generated batches the bare loop reads."""

    def __init__(self, task: Task, batches: list) -> None:
        self.task, self.fixed = task, batches

    def batches(self, split, shard):
        return iter(self.fixed[shard.start:])

    def loss(self, model, batch):
        return self.task.loss(model, batch)

    def tokens(self, batch):
        return self.task.tokens(batch)


def bare_loop(make_model, batches, warm_steps, grad_clip, lr_lambda) -> float:
    from tasks.common.classification import classification_loss
    torch.manual_seed(0)
    model = make_model()
    from engine.optim import param_groups
    import gin
    optimizer = gin.get_configurable("torch.optim.AdamW")(param_groups(model))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    model.train()
    start = None
    for index, batch in enumerate(batches):
        if index == warm_steps:
            start = time.perf_counter()
        loss, _ = classification_loss(model(batch["tokens"]), batch["label"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
    return (len(batches) - warm_steps) / (time.perf_counter() - start)


def engine_loop(task, batch_size, batches, warm_steps, steps) -> tuple[float, float]:
    """Steps/s after warm-up, and seconds from `main()` to the end of the first step."""
    from engine import program
    from engine.callbacks import Callback

    marks = {}

    class Clock(Callback):
        name = "clock"

        def on_step_end(self, trainer, step):
            if step == 1:
                marks["first"] = time.perf_counter()
            if step == warm_steps:
                marks["warm"] = time.perf_counter()
            if step == warm_steps + steps:
                marks["end"] = time.perf_counter()

    import gin
    with tempfile.TemporaryDirectory() as workdir:
        with gin.unlock_config():
            gin.bind_parameter("train.callbacks", [Clock()])
            gin.bind_parameter("train.task", FixedBatches(task, batches))
            gin.bind_parameter("train.steps", warm_steps + steps)
            gin.bind_parameter("train.checkpoint_every", 0)
            gin.bind_parameter("train.eval_every", 0)
            gin.bind_parameter("train.log_every", 50)
        begin = time.perf_counter()
        program.main(workdir)
    return steps / (marks["end"] - marks["warm"]), marks["first"] - begin


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--warm-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    record = Record(__name__, parser, argv)
    args = record.args
    task, batch_size, batches = build(args.warm_steps, args.steps)
    import gin
    make_model = gin.get_configurable("TransformerClassifier")
    from engine.optim import WarmupCosine
    schedule = gin.get_configurable(WarmupCosine)().for_steps(args.warm_steps + args.steps)
    grad_clip = gin.query_parameter("train.grad_clip")
    startup = []

    def engine() -> float:
        rate, first = engine_loop(task, batch_size, batches, args.warm_steps, args.steps)
        startup.append(first)
        return rate

    rates = interleaved({"bare": lambda: bare_loop(make_model, batches, args.warm_steps, grad_clip, schedule),
                         "engine": engine}, args.repeats)
    ratio = rates["engine"] / rates["bare"]
    first, warm = startup[0], min(startup[1:] or startup)
    print(f"threads: {torch.get_num_threads()}, batch {batch_size}, {args.steps} timed steps x {args.repeats}")
    print(f"bare PyTorch loop : {rates['bare']:8.2f} steps/s")
    print(f"engine train()    : {rates['engine']:8.2f} steps/s")
    print(f"ratio engine/bare : {ratio:.3f}   (goal >= 0.97)")
    print(f"start-up to the end of step 1: {first:.2f} s on the first run (lazy imports such as "
          f"TensorBoard), {warm:.2f} s with imports warm   (goal < 3 s)")
    record.save({"bare_steps_per_s": rates["bare"], "engine_steps_per_s": rates["engine"], "ratio": ratio,
                 "startup_first_s": first, "startup_warm_s": warm, "batch_size": batch_size},
                summary="Engine `train` / bare PyTorch loop: ratio **{ratio:.3f}** ({engine_steps_per_s:.2f} vs "
                        "{bare_steps_per_s:.2f} steps/s; goal >= 0.97); {startup_warm_s:.2f} s from `main()` to "
                        "the end of the first step with imports warm, {startup_first_s:.2f} s on the first run "
                        "(lazy imports such as TensorBoard; goal < 3 s).")
    return 0
