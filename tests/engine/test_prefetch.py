"""train.prefetch: batches generated ahead in a background thread change timing only. The losses
match the synchronous loop step for step, a SIGTERM-stopped run resumes bit for bit, an error in
generation surfaces from `train`, no thread outlives `train`, and the data wait is logged."""
from __future__ import annotations

import itertools
import os
import signal
import threading
import time

import pytest

from engine import config, program
from engine.data import Prefetched
from engine.logging import read_metrics
from engine.task import Task
from tests.helpers import REPO, TINY_PVR, SigtermAfterFirstStep, losses, train_in_process

PVR = os.path.join(REPO, "gin", "hyperut", "transformer_pvr.gin")
THREAD = "gintrain-prefetch"


def prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD]


class Wrapped(Task):
    """The configured task, with a hook on each training batch (its index and the generating thread)."""

    def __init__(self, inner: Task, on_batch) -> None:
        self.inner, self.on_batch = inner, on_batch

    def batches(self, split, shard):
        for index, batch in enumerate(self.inner.batches(split, shard), start=shard.start):
            if split == "train":
                self.on_batch(index)
            yield batch

    def loss(self, model, batch):
        return self.inner.loss(model, batch)

    def tokens(self, batch):
        return self.inner.tokens(batch)


def train_wrapped(workdir: str, bindings: list[str], on_batch):
    """`train` on the tiny C-PVR config, its task wrapped by `Wrapped(on_batch)`."""
    config.reset()
    config.parse([PVR], TINY_PVR + bindings)
    return program.train(workdir=workdir, task=Wrapped(config.built("train.task"), on_batch))


class SigtermAt(SigtermAfterFirstStep):
    """SIGTERM after step `at`, when the prefetch thread is already ahead of the loop."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, trainer, step: int) -> None:
        if step == self.at:
            signal.raise_signal(signal.SIGTERM)


# --- the iterator on its own --------------------------------------------------------------------

def test_prefetched_yields_the_same_items_in_order_and_ends_with_the_iterator():
    for depth in (0, 1, 3):
        with Prefetched(iter(range(20)), depth) as items:
            assert list(items) == list(range(20))
        assert not prefetch_threads()


def test_prefetched_raises_the_generators_own_error_at_its_place():
    class Broken(Exception):
        pass

    error = Broken("batch 3 is broken")

    def generate():
        yield from range(3)
        raise error

    with Prefetched(generate(), 2) as items:
        assert [next(items) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(Broken) as caught:
            next(items)
    assert caught.value is error
    assert not prefetch_threads()


def test_closing_early_stops_a_thread_blocked_on_a_full_queue_and_closes_the_generator():
    closed = []

    def endless():
        try:
            yield from itertools.count()
        finally:
            closed.append(True)

    items = Prefetched(endless(), 2)
    assert next(items) == 0
    deadline = time.time() + 5
    while items._queue.qsize() < 2 and time.time() < deadline:  # the thread fills the queue and blocks
        time.sleep(0.01)
    assert prefetch_threads()
    items.close()
    assert not prefetch_threads() and closed == [True]


# --- in train -----------------------------------------------------------------------------------

def test_losses_match_the_synchronous_loop_and_generation_runs_in_the_thread(tmp_path):
    bindings = ["train.steps = 12", "TransformerClassifier.dropout = 0.1"]
    where: dict[int, set[str]] = {0: set(), 2: set()}
    for depth in (0, 2):
        train_wrapped(str(tmp_path / f"prefetch_{depth}"), bindings + [f"train.prefetch = {depth}"],
                      lambda index, depth=depth: where[depth].add(threading.current_thread().name))
        assert not prefetch_threads()
    synchronous, prefetched = losses(str(tmp_path / "prefetch_0")), losses(str(tmp_path / "prefetch_2"))
    assert sorted(synchronous) == list(range(1, 13))
    assert prefetched == synchronous  # bit for bit, every step
    assert THREAD in where[2] and THREAD not in where[0]


def test_sigterm_mid_run_with_prefetch_resumes_bit_identical(tmp_path):
    bindings = TINY_PVR + ["train.steps = 14", "TransformerClassifier.dropout = 0.1"]
    reference = str(tmp_path / "reference")
    train_in_process(reference, bindings + ["train.prefetch = 0"])
    workdir = str(tmp_path / "run")
    config.reset()
    config.parse([PVR], bindings + ["train.prefetch = 2"])
    stopped = program.train(workdir=workdir, callbacks=[SigtermAt(5)])
    assert stopped.step == 5 and not stopped.finished  # stopped after the step it was on
    assert not prefetch_threads()
    resumed = train_in_process(workdir, bindings + ["train.prefetch = 2"])
    assert resumed.finished and not prefetch_threads()
    assert losses(workdir) == losses(reference)


def test_an_error_in_generation_surfaces_from_train_with_its_message(tmp_path):
    def fail_at_4(index):
        if index == 4:
            raise ValueError(f"generator broke at batch {index}")

    with pytest.raises(ValueError, match="generator broke at batch 4"):
        train_wrapped(str(tmp_path / "run"), ["train.steps = 10", "train.prefetch = 2"], fail_at_4)
    assert not prefetch_threads()
    trained = [r["step"] for r in read_metrics(str(tmp_path / "run")) if r["split"] == "train"]
    assert trained == [1, 2, 3, 4]  # batches 0..3 trained; the error came at the loop's 5th batch


def test_data_wait_is_logged_each_log_step_and_counts_generation_time_without_prefetch(tmp_path):
    slow_s = 0.02
    for depth in (0, 2):
        workdir = str(tmp_path / f"prefetch_{depth}")
        train_wrapped(workdir, ["train.steps = 6", "train.log_every = 2", f"train.prefetch = {depth}"],
                      lambda index: time.sleep(slow_s))
        train = [r for r in read_metrics(workdir) if r["split"] == "train"]
        assert [r["step"] for r in train] == [2, 4, 6]
        assert all(r["perf/data_wait_ms"] >= 0 for r in train)
        if depth == 0:  # the loop itself generates: every step waits at least the sleep
            assert all(r["perf/data_wait_ms"] >= 1000 * slow_s for r in train)


def test_prefetch_must_be_a_non_negative_integer(tmp_path):
    from engine.errors import ConfigError
    with pytest.raises(ConfigError, match="train.prefetch"):
        train_in_process(str(tmp_path / "run"), TINY_PVR + ["train.steps = 2", "train.prefetch = -1"])
    assert not os.path.exists(tmp_path / "run" / "metrics.jsonl")


def test_the_default_depth_prefetches_on_an_accelerator_and_not_on_the_cpu():
    """None (the default) means 2 ahead on a GPU, where the CPU is free while the step runs, and
    none on the CPU, where a generating thread would take cores from the step; a bound value wins."""
    import types

    import torch

    from engine.trainer import Settings, Trainer
    assert Settings(steps=1, batch_size=1).prefetch is None
    for device, bound, expected in (("cpu", None, 0), ("cuda:0", None, 2), ("cpu", 3, 3), ("cuda", 0, 0)):
        fake = types.SimpleNamespace(settings=types.SimpleNamespace(prefetch=bound),
                                     strategy=types.SimpleNamespace(device=torch.device(device)))
        assert Trainer.prefetch_depth(fake) == expected
