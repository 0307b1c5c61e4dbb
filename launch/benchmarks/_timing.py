"""Timing helpers shared by the benchmarks: interleaved repeats and medians."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Call each run `repeats` times, alternating, and return the median of what each returns."""
    results: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            results[name].append(run())
    return {name: statistics.median(values) for name, values in results.items()}


class Stopwatch:
    def __enter__(self) -> "Stopwatch":
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def training_seconds(task, model, batch_size: int, warm: int, steps: int) -> float:
    """Seconds for `steps` training steps (task loss, backward, AdamW) on pre-generated batches of
    the task's 'train' split, after `warm` untimed steps."""
    import itertools

    import torch

    from engine.data import Shard
    batches = list(itertools.islice(task.batches("train", Shard(batch_size=batch_size)), warm + steps))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    start = 0.0
    for index, batch in enumerate(batches):
        if index == warm:
            start = time.perf_counter()
        loss, _ = task.loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def engine_run(bindings: dict, warm_steps: int, steps: int, log_every: int) -> dict:
    """Steps/s of the engine's `train` (under the parsed gin config, with `bindings` bound on top)
    over `steps` steps after `warm_steps`, its logged train losses, and the mean data wait per
    timed step."""
    import statistics
    import tempfile

    import gin

    from engine import program
    from engine.callbacks import Callback
    from engine.logging import read_metrics

    marks = {}

    class Clock(Callback):
        name = "clock"

        def on_step_end(self, trainer, step):
            if step in (warm_steps, warm_steps + steps):
                marks[step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as workdir:
        with gin.unlock_config():
            for name, value in {"train.callbacks": [Clock()], "train.steps": warm_steps + steps,
                                "train.checkpoint_every": 0, "train.eval_every": 0, "train.log_every": log_every,
                                **bindings}.items():
                gin.bind_parameter(name, value)
        program.main(workdir)
        train = [r for r in read_metrics(workdir) if r["split"] == "train"]
    timed = [r["perf/data_wait_ms"] for r in train if r["step"] > warm_steps]
    return {"steps_per_s": steps / (marks[warm_steps + steps] - marks[warm_steps]),
            "losses": [(r["step"], r["loss"]) for r in train], "wait_ms": statistics.mean(timed)}
