"""Helpers the tests share: the repository's paths, a tiny C-PVR configuration, and ways to run the
CLI in a fresh process or a configured program in this one."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(REPO, "launch", "run.py")

# A tiny Transformer on C-PVR: a few milliseconds per step, so engine tests stay fast.
TINY_PVR = [
    "TransformerClassifier.d_model = 16",
    "TransformerClassifier.num_heads = 2",
    "TransformerClassifier.num_layers = 1",
    "CPVR.length = 8",
    "CPVR.train_hops = (1, 3)",
    "CPVR.eval_hops = (1, 4)",
    "CPVR.eval_examples_per_level = 16",
    "LENGTH = 8",
    "train.batch_size = 8",
    "train.log_every = 1",
    "train.eval_every = 0",
    "train.checkpoint_every = 10",
    "WarmupCosine.warmup_steps = 5",
]


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
    from engine.task import Shard
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
