"""Helpers the tests share: the repository's paths, a tiny C-PVR configuration, and ways to run the
CLI in a fresh process or a configured program in this one."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

from engine.callbacks import Callback
from engine.config import REPO_ROOT as REPO

RUN = os.path.join(REPO, "launch", "run.py")



def tiny_config(name: str) -> list[str]:
    """The statements of tests/gin/NAME.gin as bindings: tiny shapes live in gin files, and tests
    pass them as bindings so that their own extra bindings (and torchrun's --bind) land on top."""
    statements, pending = [], ""
    with open(os.path.join(REPO, "tests", "gin", f"{name}.gin")) as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip() if not pending else line.strip()
            if not line:
                continue
            pending = f"{pending} {line}".strip()
            if sum(pending.count(o) - pending.count(c) for o, c in ("()", "[]", "{}")) == 0:
                statements.append(pending)
                pending = ""
    return statements


# A tiny Transformer on C-PVR: a few milliseconds per step, so engine tests stay fast.
TINY_PVR = tiny_config("tiny_pvr")


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def run_cli(args: list[str], *, cwd: str = REPO, timeout: float = 300, **popen) -> subprocess.CompletedProcess:
    """Run `python launch/run.py ARGS` in a fresh process."""
    return subprocess.run([sys.executable, RUN, *args], cwd=cwd, env=subprocess_env(), capture_output=True,
                          text=True, timeout=timeout, **popen)


def train_in_process(workdir: str, bindings: list[str], files: tuple[str, ...] = ("gin/hyperut/transformer_pvr.gin",)):
    """Parse `files` + `bindings` and run the configured program here; returns its result."""
    from engine import config, program
    config.reset()
    config.parse([os.path.join(REPO, f) for f in files], bindings)
    return program.main(workdir)


def losses(workdir: str, split: str = "train") -> dict[int, float]:
    from engine.logging import read_metrics
    return {r["step"]: r["loss"] for r in read_metrics(workdir) if r["split"] == split}


def fit_task(task, model: torch.nn.Module, *, steps: int, lr: float, batch_size: int) -> None:
    """Fit `model` on `task`'s training batches with Adam and a one-cycle schedule, outside the
    engine (for tests of a task and model pair on their own); leaves the model in eval mode."""
    from engine.data import Shard
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    batches = task.batches("train", Shard(batch_size=batch_size))
    model.train()
    for _ in range(steps):
        loss, _ = task.loss(model, next(batches))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()


def print_config(workdir: str, bindings: list[str], files: tuple[str, ...]) -> tuple[int, str]:
    """`launch/run.py --print-config` in this process: (exit code, what it printed)."""
    import contextlib
    import io

    from engine import config
    from launch.run import main as run_main
    config.reset()
    args = [a for f in files for a in ("--gin", os.path.join(REPO, f))] + [a for b in bindings for a in ("--bind", b)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_main(args + ["--print-config", "--workdir", workdir])
    return code, out.getvalue()


class SigtermAfterFirstStep(Callback):
    """Sends this process SIGTERM after the first step, as a preempting cluster would. `train`
    handles it only in the main thread, where pytest runs tests (else the test is skipped)."""

    def on_start(self, trainer) -> None:
        import threading

        import pytest
        if threading.current_thread() is not threading.main_thread():
            pytest.skip("signal handlers need the main thread")

    def on_step_end(self, trainer, step: int) -> None:
        import signal
        if step == 1:
            signal.raise_signal(signal.SIGTERM)


def stop_first_stage(monkeypatch, program_module) -> None:
    """The first `train` call of `program_module` is stopped by SIGTERM after its first step;
    later calls run as usual."""
    from engine import program
    calls = []

    def train(**kwargs):
        calls.append(kwargs)
        return program.train(**kwargs, callbacks=[SigtermAfterFirstStep()] if len(calls) == 1 else [])

    monkeypatch.setattr(program_module, "train", train)


def config_error(*parts: object):
    """`pytest.raises(ConfigError)` that also checks that the message's first line (the one
    launch/run.py prints; gin appends its call trail below) holds every part: a file name,
    'line 3', what was wrong. Data-file tests assert what a user would read."""
    import contextlib

    import pytest

    from engine.errors import ConfigError

    @contextlib.contextmanager
    def expect():
        with pytest.raises(ConfigError) as caught:
            yield caught
        message = str(caught.value).splitlines()[0]
        missing = [str(part) for part in parts if str(part) not in message]
        assert not missing, f"{missing} not in the message {message!r}"
    return expect()
