"""Atomic checkpoints with retention, exact resume and consolidated safetensors export.

Layout: `<workdir>/checkpoints/step_000500/` (the strategy's files + `meta.json`) and a
`latest` file naming the newest one. Every rank writes into a temporary folder; rank 0 renames
it into place and only then rewrites `latest`, so a crash mid-save leaves the previous
checkpoint loadable.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import time
from typing import Any

import torch

from engine.errors import ConfigError
from engine.files import write_atomically

CHECKPOINTS = "checkpoints"
LATEST = "latest"
META = "meta.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def root(workdir: str) -> str:
    return os.path.join(workdir, CHECKPOINTS)


def _fsync_tree(path: str) -> None:
    for folder, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(folder, name), "rb") as handle:
                os.fsync(handle.fileno())


def complete_checkpoints(workdir: str) -> list[tuple[int, str]]:
    """(step, path) of every finished checkpoint, oldest first."""
    found = []
    for path in glob.glob(os.path.join(root(workdir), "step_*")):
        match = _STEP_DIR.match(os.path.basename(path))
        if match and os.path.isfile(os.path.join(path, META)):
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest(workdir: str) -> str | None:
    """The checkpoint a restarted run resumes from, or None."""
    pointer = os.path.join(root(workdir), LATEST)
    if os.path.isfile(pointer):
        with open(pointer) as handle:
            path = os.path.join(root(workdir), handle.read().strip())
        if os.path.isfile(os.path.join(path, META)):
            return path
    found = complete_checkpoints(workdir)
    return found[-1][1] if found else None


def resolve(path: str, *, name: str = "", hint: str = "") -> str:
    """The finished checkpoint `path` names: a checkpoint folder itself, or a run folder's newest
    one - so every command that reads a checkpoint takes either. `name` (the argument or binding
    that gave `path`) leads the error message; `hint` ends it."""
    if os.path.isfile(os.path.join(path, META)):
        return path
    found = latest(path)
    if found is None:
        raise ConfigError(f"{name + ' = ' if name else ''}{path!r} holds no finished checkpoint: give a run folder "
                          f"(for its latest checkpoint) or a checkpoint folder such as runs/x/{CHECKPOINTS}/step_000500"
                          + (f"; {hint}" if hint else ""))
    return found


def read_meta(path: str) -> dict[str, Any]:
    meta_path = os.path.join(path, META)
    if not os.path.isfile(meta_path):
        raise ConfigError(f"{path!r} is not a finished checkpoint (no {META})")
    with open(meta_path) as handle:
        return json.load(handle)


def save(strategy, workdir: str, step: int, train_state: dict, *, keep: int | None) -> str:
    """Write a checkpoint of `step` (collective: every rank calls it); return its path."""
    base = root(workdir)
    final = os.path.join(base, step_dir_name(step))
    tmp = os.path.join(base, f".tmp-{step_dir_name(step)}")
    if strategy.is_main:
        os.makedirs(base, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    strategy.barrier()
    strategy.save(tmp, train_state)
    strategy.barrier()
    if strategy.is_main:
        meta = {"step": step, "strategy": strategy.name, "world_size": strategy.world_size,
                "config_hash": train_state.get("config_hash"), "time": time.time()}
        with open(os.path.join(tmp, META), "w") as handle:
            json.dump(meta, handle, indent=1)
        _fsync_tree(tmp)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(tmp, final)
        write_atomically(os.path.join(base, LATEST), step_dir_name(step), fsync=True)
        prune(workdir, keep)
    strategy.barrier()
    return final


def prune(workdir: str, keep: int | None) -> None:
    """Delete all but the newest `keep` finished checkpoints (and stale temporary folders)."""
    for stale in glob.glob(os.path.join(root(workdir), ".tmp-step_*")):
        shutil.rmtree(stale, ignore_errors=True)
    if keep is None:
        return
    found = complete_checkpoints(workdir)
    for _, path in found[:-keep] if keep > 0 else found:
        shutil.rmtree(path, ignore_errors=True)


def load(strategy, path: str) -> dict:
    """Restore a checkpoint into a prepared strategy; return this rank's train state."""
    meta = read_meta(path)
    if meta["strategy"] != strategy.name:
        raise ConfigError(
            f"checkpoint {path!r} was written by strategy {meta['strategy']!r} but this run uses "
            f"{strategy.name!r}; export it (launch/export.py) and start with train.init_from")
    return strategy.load(path)


def consolidated_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The full model state dict of any strategy's checkpoint, in this one process."""
    from engine.strategies import consolidate
    return consolidate(path, read_meta(path)["strategy"])


def export_safetensors(path: str, out_file: str) -> int:
    """Write the checkpoint's consolidated weights to `out_file`; return the tensor count."""
    from safetensors.torch import save_file
    state = consolidated_state_dict(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    # safetensors refuses tensors that share storage (tied weights): clone each one.
    tensors = {k: v.clone() for k, v in tensors.items()}
    os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
    save_file(tensors, out_file, metadata={"source": os.path.abspath(path)})
    return len(tensors)


def load_weights(path: str) -> dict[str, torch.Tensor]:
    """Weights for `train.init_from`: a safetensors file or a checkpoint folder."""
    if os.path.isdir(path):
        return consolidated_state_dict(path)
    if not os.path.isfile(path):
        raise ConfigError(f"train.init_from: no such file {path!r}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)
