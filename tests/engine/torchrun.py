"""Helpers to run real torchrun jobs from tests, and to share one job's result between tests.

Jobs run in their own process session so a test can SIGKILL the launcher and its ranks together.
A finished reference job is cached on disk under pytest's base temporary folder (shared by the
xdist workers of one session) behind a file lock, so tests that only read it do not rerun it.
"""
from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Callable

from tests.helpers import REPO, RUN, TINY_PVR, subprocess_env

STEPS = 60
CHECKPOINT_EVERY = 10
# 2 ranks x micro-batch 2 x 2 accumulation steps = global batch 8 (TINY_PVR's).
BINDINGS = TINY_PVR + [f"train.steps = {STEPS}", f"train.checkpoint_every = {CHECKPOINT_EVERY}",
                       "train.micro_batch_size = 2", "train.keep_checkpoints = 2",
                       "train.eval_every = 60", "CPVR.eval_examples_per_level = 16"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def strategy_file(name: str) -> str:
    return os.path.join("gin", "strategy", f"{name}.gin")


def cli_args(strategy: str, bindings: list[str]) -> list[str]:
    args = ["--gin", "gin/hyperut/transformer_pvr.gin", "--gin", strategy_file(strategy)]
    for binding in bindings:
        args += ["--bind", binding]
    return args


def start(workdir: str, strategy: str, *, bindings: list[str] = BINDINGS, launcher: list[str] | None = None,
          log_name: str = "torchrun.log") -> subprocess.Popen:
    """Start `torchrun ... launch/run.py` in its own session; output goes to <workdir>.<log_name>."""
    os.makedirs(os.path.dirname(workdir) or ".", exist_ok=True)
    launcher = launcher or ["--standalone", "--nproc-per-node", "2"]
    log = open(f"{workdir}.{log_name}", "w")
    command = TORCHRUN + launcher + [RUN] + cli_args(strategy, bindings) + ["--workdir", workdir]
    # The ranks stay on CPU/gloo on a GPU machine too: what these jobs test is the strategies' semantics,
    # compared exactly with CPU references (and one GPU could not host two NCCL ranks anyway).
    # A rank that dies of a signal prints its Python stack into the job's log.
    env = subprocess_env(GINTRAIN_DEVICE=os.environ.get("GINTRAIN_DEVICE", "cpu"), PYTHONFAULTHANDLER="1")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish(proc: subprocess.Popen, workdir: str, timeout: float = 600, log_name: str = "torchrun.log") -> None:
    code = proc.wait(timeout=timeout)
    if code != 0:
        with open(f"{workdir}.{log_name}") as handle:
            raise AssertionError(f"torchrun failed ({code}):\n{handle.read()[-4000:]}")


def run(workdir: str, strategy: str, **kwargs) -> str:
    finish(start(workdir, strategy, **kwargs), workdir, log_name=kwargs.get("log_name", "torchrun.log"))
    return workdir


def kill_session(proc: subprocess.Popen) -> None:
    """Kill a torchrun job and its ranks: torchrun may start its ranks in sessions of their own,
    which a kill of its process group would leave training after the test."""
    import psutil
    try:
        ranks = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        ranks = []
    os.killpg(proc.pid, signal.SIGKILL)
    for rank in ranks:
        try:
            rank.kill()
        except psutil.Error:
            pass
    proc.wait()


def wait_until(predicate: Callable[[], bool], proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError("the job ended before the awaited moment")
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cached(base: str, key: str, make: Callable[[str], object]) -> str:
    """Run `make(path)` once per pytest session for `key` (across xdist workers); return path."""
    path = os.path.join(base, key)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(path + ".done"):
            make(path)
            open(path + ".done", "w").close()
    return path


def reference_run(shared_dir: str, strategy: str) -> str:
    """The uninterrupted 2-rank run of `strategy`, run once per session (every test file that
    compares against it shares the one cached job)."""
    return cached(shared_dir, f"uninterrupted-{strategy}", lambda path: run(path, strategy))
