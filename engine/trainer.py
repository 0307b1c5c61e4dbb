"""The training loop: micro-batches, accumulation, clipping, the NaN guard, and the
eval / checkpoint / log cadence. It knows tasks and strategies only through their contracts.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Sequence

import torch

from engine import activation_checkpointing, checkpoint, distributed, memory, throughput
from engine.callbacks import Callback
from engine.data import Prefetched, Shard, micro_batches, to_device
from engine.errors import ConfigError, require_int, require_number
from engine.logging import RunLogger
from engine.preemption import StopRequest
from engine.task import Task

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


class NonFiniteError(RuntimeError):
    """Training stopped because a loss or gradient was NaN or infinite."""


@dataclasses.dataclass
class Settings:
    """The loop's knobs (the `train` program's scalar parameters), validated up front."""

    steps: int
    batch_size: int
    micro_batch_size: int | None = None
    precision: str = "fp32"
    grad_clip: float | None = 1.0
    seed: int = 0
    log_every: int = 50
    eval_every: int = 0
    eval_splits: Sequence[str] = ("eval",)
    checkpoint_every: int = 1000
    keep_checkpoints: int | None = 3
    nonfinite: str = "stop"
    compile: bool = False
    # Training batches generated ahead in a background thread; 0: in the loop. None: 2 on an
    # accelerator, 0 on the CPU, where the thread takes cores from the step itself (bench.py overhead:
    # 0.90 of a bare loop with 2 ahead vs 0.96 in the loop when batches cost nothing to make).
    prefetch: int | None = None
    # True: recompute the blocks FSDP shards in backward; a list: blocks of these classes
    # (engine/activation_checkpointing.py).
    activation_checkpointing: bool | Sequence[str] = False

    def validate(self, world_size: int) -> None:
        def integer(name: str, minimum: int, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if not (value is None and allow_none):
                require_int(value, f"train.{name}", low=minimum, hint="None is also allowed" if allow_none else "")

        integer("steps", 1)
        integer("batch_size", 1)
        integer("micro_batch_size", 1, allow_none=True)
        integer("seed", 0)
        integer("log_every", 1)
        integer("eval_every", 0)
        integer("checkpoint_every", 0)
        integer("keep_checkpoints", 1, allow_none=True)
        integer("prefetch", 0, allow_none=True)
        if self.batch_size % world_size:
            raise ConfigError(f"train.batch_size = {self.batch_size} is not divisible by the "
                              f"{world_size} ranks of this run")
        local = self.batch_size // world_size
        if self.micro_batch_size is not None and local % self.micro_batch_size:
            raise ConfigError(f"train.micro_batch_size = {self.micro_batch_size} does not divide the "
                              f"per-rank batch {local} (batch_size {self.batch_size} / {world_size} ranks)")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train.precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        if self.grad_clip is not None:
            require_number(self.grad_clip, "train.grad_clip", above=0, hint="None turns clipping off")
        if self.nonfinite not in ("stop", "skip"):
            raise ConfigError(f"train.nonfinite must be 'stop' or 'skip', got {self.nonfinite!r}")
        if isinstance(self.eval_splits, str) or not all(isinstance(s, str) for s in self.eval_splits):
            raise ConfigError(f"train.eval_splits must be a list of split names, got {self.eval_splits!r}")
        activation_checkpointing.validate(self.activation_checkpointing)

    def accumulation_steps(self, world_size: int) -> int:
        local = self.batch_size // world_size
        return local // (self.micro_batch_size or local)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return memory.peak_resident_mb()


class Trainer:
    """Runs `settings.steps` optimizer steps of `task` under `strategy`, resumably."""

    def __init__(self, *, task: Task, strategy, settings: Settings, workdir: str,
                 logger: RunLogger, callbacks: Sequence[Callback] = (), config_hash: str = "",
                 on_first_step=None, flops_per_example: int | None = None) -> None:
        self.task = task
        self.strategy = strategy
        self.settings = settings
        self.workdir = workdir
        self.logger = logger
        self.callbacks = list(callbacks)
        self.config_hash = config_hash
        self.on_first_step = on_first_step
        self.step = 0
        self.skipped_steps = 0
        self.last_eval: dict[str, dict[str, Any]] = {}
        self.accumulation = settings.accumulation_steps(strategy.world_size)
        self.shard = Shard(batch_size=settings.batch_size, seed=settings.seed,
                           rank=strategy.rank, world_size=strategy.world_size)
        # Forward FLOPs per example, measured once at start (program._check_model_on_task): the
        # achieved FLOP/s and MFU of each log step come from it and the examples/s rate.
        self.flops_per_example = flops_per_example
        self.device_name = throughput.device_name(strategy.device)
        self.precision = throughput.run_precision(settings.precision, strategy, strategy.device)
        self.peak_flops = throughput.peak_flops_per_s(self.device_name, self.precision)

    @property
    def model(self) -> torch.nn.Module:
        return self.strategy.model

    # --- state ------------------------------------------------------------------------------
    def train_state(self) -> dict:
        return {"step": self.step, "data_cursor": self.step, "rng": distributed.rng_state(),
                "config_hash": self.config_hash, "skipped_steps": self.skipped_steps,
                "callbacks": {cb.name: cb.state_dict() for cb in self.callbacks}}

    def restore(self, state: dict) -> None:
        self.step = int(state["step"])
        self.skipped_steps = int(state.get("skipped_steps", 0))
        distributed.set_rng_state(state["rng"])
        saved = state.get("callbacks", {})
        for cb in self.callbacks:
            if cb.name in saved:
                cb.load_state_dict(saved[cb.name])
        if state.get("config_hash") and state["config_hash"] != self.config_hash:
            self.logger.info("warning: the configuration differs from the one this checkpoint was "
                             "written with; resuming anyway (see config.gin for the new one)")

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = PRECISIONS[self.settings.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.strategy.device.type, dtype=dtype)

    # --- one step ---------------------------------------------------------------------------
    def train_step(self, batch) -> dict[str, torch.Tensor]:
        """Forward/backward over the micro-batches of one step, then clip and step."""
        strategy = self.strategy
        totals: dict[str, torch.Tensor] = {}
        pieces = micro_batches(batch, self.accumulation) if self.accumulation > 1 else [batch]
        for index, piece in enumerate(pieces):
            piece = to_device(piece, strategy.device)
            # Backward stays inside `accumulating`: some engines (fairscale) read the flag in
            # their backward hooks, others (DDP) at forward time.
            with strategy.accumulating(last=index == len(pieces) - 1):
                with self.autocast():
                    loss, metrics = self.task.loss(self.model, piece)
                strategy.backward(loss, len(pieces))
            for name, value in {"loss": loss, **metrics}.items():
                value = value.detach().float()
                totals[name] = totals[name] + value if name in totals else value
        step_metrics = {name: value / len(pieces) for name, value in totals.items()}
        learning_rate = strategy.learning_rate
        grad_norm = strategy.clip_gradients(self.settings.grad_clip)
        if strategy.all_finite(step_metrics["loss"], grad_norm):
            strategy.optimizer_step()
        elif self.settings.nonfinite == "skip":
            strategy.skip_step()
            self.skipped_steps += 1
        else:
            last = checkpoint.latest(self.workdir)
            raise NonFiniteError(
                f"non-finite loss or gradient at step {self.step + 1}; the last good checkpoint is "
                f"{last or 'none (no checkpoint was written yet)'}. Bind train.nonfinite = 'skip' "
                "to skip such steps instead.")
        if grad_norm is None:
            grad_norm = strategy.grad_norm_after_step()
        step_metrics["lr"] = torch.tensor(learning_rate)
        if grad_norm is not None:
            step_metrics["grad_norm"] = grad_norm.detach().float()
        return step_metrics

    def _log_state_bytes(self) -> None:
        """Parameter and optimizer-state bytes and peak memory of each rank: shows sharding is real."""
        report = self.strategy.local_state_bytes()
        per_rank = distributed.all_gather_values([report["parameters"], report["optimizer"],
                                                  _peak_memory_mb(self.strategy.device)])
        values = {}
        for rank, (params, state, peak) in enumerate(per_rank):
            values[f"parameter_bytes/rank_{rank}"] = params
            values[f"optimizer_bytes/rank_{rank}"] = state
            values[f"peak_memory_mb/rank_{rank}"] = peak
        self.logger.log(self.step, "memory", values)

    # --- evaluation and checkpoints ---------------------------------------------------------
    def evaluate(self) -> dict[str, dict[str, Any]]:
        results = {}
        module = self.strategy.module
        was_training = module.training
        module.eval()
        try:
            for split in self.settings.eval_splits:
                with torch.no_grad(), torch.random.fork_rng(devices=self._rng_devices()), self.autocast(), \
                        self.strategy.evaluating():
                    metrics = dict(self.task.evaluate(self.model, split, self.shard))
                    for cb in self.callbacks:
                        metrics.update(cb.on_evaluate(self, self.step, split))
                metrics = self.strategy.reduce(metrics)
                if self.strategy.is_main:
                    metrics.update(self.task.summarize(split, metrics))
                self.logger.log(self.step, split if split != "train" else "eval_train", metrics)
                results[split] = metrics
        finally:
            module.train(was_training)
        self.last_eval = results
        return results

    def _rng_devices(self) -> list:
        return [self.strategy.device] if self.strategy.device.type == "cuda" else []

    def save(self) -> str:
        return checkpoint.save(self.strategy, self.workdir, self.step, self.train_state(),
                               keep=self.settings.keep_checkpoints)

    def prefetch_depth(self) -> int:
        """`train.prefetch`, or where it is None: 2 batches ahead on an accelerator, none on the CPU."""
        if self.settings.prefetch is not None:
            return self.settings.prefetch
        return 0 if torch.device(self.strategy.device).type == "cpu" else 2

    def _say_what_perf_leaves_out(self) -> None:
        """Once per run: why there is no achieved FLOP/s, or no MFU on an accelerator, in the logs."""
        if not self.flops_per_example:
            self.logger.info("perf/achieved_gflops and perf/mfu are not logged: the FLOP counter found no "
                             "FLOPs in one forward of the model's loss")
        elif self.peak_flops is None and self.device_name is not None:
            self.logger.info(f"perf/mfu is not logged: no peak FLOP/s for {self.device_name!r} at "
                             f"{self.precision} in engine/throughput.py's PEAKS")

    # --- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict[str, dict[str, Any]]:
        settings, strategy, logger = self.settings, self.strategy, self.logger
        strategy.module.train()
        for cb in self.callbacks:
            cb.on_start(self)
        first_step = self.step
        window: dict[str, torch.Tensor] = {}
        window_steps, window_tokens, window_start = 0, 0, time.perf_counter()
        self._say_what_perf_leaves_out()
        # Leaving the `with` (the last step, a stop request, an error) stops the prefetch thread.
        with StopRequest() as stop, \
                Prefetched(self.task.batches("train", self.shard.replace(start=self.step)),
                           self.prefetch_depth()) as batches:
            window_wait = batches.wait_s
            while self.step < settings.steps:
                batch = next(batches)
                tokens = self.task.tokens(batch)
                metrics = self.train_step(batch)
                self.step += 1
                for cb in self.callbacks:
                    cb.on_step_end(self, self.step)
                for name, value in metrics.items():
                    window[name] = window[name] + value if name in window else value
                window_steps += 1
                window_tokens += tokens or 0
                logger.advance()
                if self.step == 1:
                    self._log_state_bytes()
                    if self.on_first_step is not None:
                        self.on_first_step()
                last = self.step == settings.steps
                if self.step % settings.log_every == 0 or last:
                    elapsed = time.perf_counter() - window_start
                    reduced = strategy.reduce({k: v / window_steps for k, v in window.items()})
                    reduced["examples_per_s"] = settings.batch_size * window_steps / elapsed
                    if tokens is not None:
                        reduced["tokens_per_s"] = window_tokens * strategy.world_size / elapsed
                    reduced["step_time_s"] = elapsed / window_steps
                    # This rank's time blocked on the next batch: near 0 once prefetch keeps up.
                    reduced["perf/data_wait_ms"] = 1000 * (batches.wait_s - window_wait) / window_steps
                    window_wait = batches.wait_s
                    if self.flops_per_example:
                        reduced.update(throughput.perf_metrics(self.flops_per_example, reduced["examples_per_s"],
                                                               strategy.world_size, self.peak_flops))
                    reduced["peak_memory_mb"] = _peak_memory_mb(strategy.device)
                    if self.skipped_steps:
                        reduced["nonfinite_skipped"] = self.skipped_steps
                    logger.log(self.step, "train", reduced)
                    window, window_steps, window_tokens = {}, 0, 0
                    window_start = time.perf_counter()
                paused = time.perf_counter()  # evaluation and saving stay out of throughput
                if settings.eval_every and (self.step % settings.eval_every == 0 or last):
                    self.evaluate()
                stopping = distributed.any_rank(stop.requested) if strategy.world_size > 1 else stop.requested
                if (settings.checkpoint_every and self.step % settings.checkpoint_every == 0) or last or stopping:
                    self.save()
                if stopping:
                    logger.info(f"received {stop.signal_name or 'a stop request'}: saved a checkpoint at "
                                f"step {self.step}; run the same command again to resume")
                    break
                window_start += time.perf_counter() - paused
        if self.step >= settings.steps and self.step > first_step:
            self._log_state_bytes()  # again at the end: peak memory over the whole run
        if not self.last_eval and settings.eval_every and self.step >= settings.steps:
            self.evaluate()  # resumed a finished run: report its final metrics again
        for cb in self.callbacks:
            cb.on_end(self)
        return self.last_eval
