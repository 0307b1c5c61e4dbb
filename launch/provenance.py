"""Where a result came from: the command, the code (git commit and whether the tree was dirty), the
configuration (its hash), the software (Python, torch, CUDA), the machine (CPU model or GPU name,
threads) and the wall time. Every row a study writes carries one, so a table can refuse to mix runs
from different machines and a reader can rerun any row.
"""
from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from typing import Any

from engine.config import REPO_ROOT


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """{'commit': HEAD or None, 'dirty': tracked files differ from HEAD} (read-only git calls)."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", REPO_ROOT, *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip() if commit else None, "dirty": bool(status.strip()) if status is not None else None}


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what the platform says."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device() -> dict[str, str]:
    """The device a single-process run of this process trains on, as the engine picks it."""
    import torch

    from engine.distributed import default_device
    chosen = default_device()
    if chosen.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(chosen)}
    return {"type": "cpu", "name": cpu_model()}


def versions(on_cuda: bool) -> dict[str, str | None]:
    import numpy
    import torch
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "cuda": torch.version.cuda if on_cuda else None}


def collect(*, command: str, run_command: str, config_hash: str, wall_s: float, resumed: bool) -> dict[str, Any]:
    """The provenance of a run that just finished in this process."""
    import torch
    where = device()
    return {"command": command, "run_command": run_command, **git_state(), "config_hash": config_hash,
            "versions": versions(where["type"] == "cuda"), "device": where, "threads": torch.get_num_threads(),
            "wall_s": round(float(wall_s), 2), "resumed": resumed, "platform": sys.platform,
            "slurm_job": os.environ.get("SLURM_JOB_ID")}


def machine(provenance: dict[str, Any]) -> str:
    """The key runs must share to sit in one table: the device type and name."""
    where = provenance["device"]
    return f"{where['type']}: {where['name']}"
