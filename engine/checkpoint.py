"""Atomic checkpoints with retention, exact resume and consolidated safetensors export.

Layout: `<workdir>/checkpoints/step_000500/` (the strategy's files + `meta.json`) and a
`latest` file naming the newest one. Every rank writes into a temporary folder; rank 0 renames
it into place and only then rewrites `latest`, so a crash mid-save leaves the previous
checkpoint loadable.

Verified: `meta.json`, written last, lists every file of the checkpoint with its size and
SHA-256 (about 1.7 GB/s per core with SHA-NI: a small share of the write itself; the ranks hash
their shares in parallel). Resuming checks them (collectively), and checks that no pickle in the
folder would import anything but tensors and the few library types checkpoints hold, before any
library unpickles a byte: DeepSpeed and DCP's metadata load with plain `pickle`. A damaged or
refused newest checkpoint is set aside (`damaged-step_...`) and the run resumes from the newest
intact one; a save that fails (a full disk, a quota) removes its temporary folder and leaves the
previous checkpoint and `latest` as they were.
"""
from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import pickletools
import re
import shutil
import time
import zipfile
from typing import Any, Callable

import torch

from engine import distributed
from engine.errors import ConfigError, RefusedFile, StorageError, storage_cause
from engine.files import write_atomically

CHECKPOINTS = "checkpoints"
LATEST = "latest"
META = "meta.json"
DAMAGED_PREFIX = "damaged-"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_CHUNK = 8 * 2**20
COMPUTED = "<a global named at load time>"

#: Globals a checkpoint's pickles may name beyond torch's own `weights_only` allowlist: the plain
#: data classes DeepSpeed's optimizer states and DCP's `.metadata` hold (seen in every strategy's
#: checkpoints under torch 2.13 / deepspeed 0.19.8). Exact names, never whole modules.
LIBRARY_GLOBALS = frozenset({
    "deepspeed.runtime.fp16.loss_scaler.LossScaler", "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum", "deepspeed.utils.tensor_fragment.fragment_address",
    "pathlib.PosixPath", "torch.distributed.checkpoint.filesystem._StorageInfo",
    *(f"torch.distributed.checkpoint.metadata.{name}" for name in (
        "Metadata", "MetadataIndex", "StorageMeta", "TensorProperties", "TensorStorageMetadata",
        "BytesStorageMetadata", "ChunkStorageMetadata", "_MEM_FORMAT_ENCODING")),
})


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


def resolve(path: str, *, name: str = "", hint: str = "", report: Callable[[str], None] | None = None) -> str:
    """The finished, verified checkpoint `path` names: a checkpoint folder itself, or a run
    folder's newest intact one - so every command that reads a checkpoint takes either. `name`
    (the argument or binding that gave `path`) leads the error message; `hint` ends it. A damaged
    checkpoint folder is a RefusedFile; in a run folder damaged ones are skipped, each told to
    `report`. One process (nothing is renamed): export, init_from, a teacher's weights."""
    given = f"{name + ' = ' if name else ''}{path!r}"
    if os.path.isfile(os.path.join(path, META)):
        found = problems(path)
        if found:
            raise RefusedFile(f"{given}: this checkpoint cannot be used: {found[0]}")
        return path
    tried = candidates(path)
    if not tried:
        raise ConfigError(f"{given} holds no finished checkpoint: give a run folder "
                          f"(for its latest checkpoint) or a checkpoint folder such as runs/x/{CHECKPOINTS}/step_000500"
                          + (f"; {hint}" if hint else ""))
    damaged = []
    for candidate in tried:
        found = problems(candidate)
        if not found:
            return candidate
        if report is not None:
            report(f"checkpoint {candidate} cannot be used: {found[0]}; skipped")
        damaged.append((candidate, found[0]))
    raise RefusedFile(f"{given}: " + _none_usable(root(path), damaged))


def read_meta(path: str) -> dict[str, Any]:
    meta_path = os.path.join(path, META)
    if not os.path.isfile(meta_path):
        raise ConfigError(f"{path!r} is not a finished checkpoint (no {META})")
    with open(meta_path) as handle:
        return json.load(handle)


def save(strategy, workdir: str, step: int, train_state: dict, *, keep: int | None) -> str:
    """Write a checkpoint of `step` (collective: every rank calls it); return its path.

    After each phase the ranks agree on whether any of them failed; on a failure the temporary
    folder is removed, the previous checkpoint and `latest` stay as they were, and every rank
    raises: a StorageError (one line, exit code 3) where the storage refused the write."""
    base = root(workdir)
    name = step_dir_name(step)
    final = os.path.join(base, name)
    tmp = os.path.join(base, f".tmp-{name}")
    previous = latest(workdir)

    def phase(action: Callable[[], Any], everyone: bool = True) -> Any:
        error, result = None, None
        if everyone or strategy.is_main:
            try:
                result = action()
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as caught:  # noqa: BLE001 - DCP's CheckpointException is a BaseException
                error = caught
        reports = distributed.gather_objects(None if error is None else _describe_failure(error, tmp))
        if any(report is not None for report in reports):
            if strategy.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise _save_failed(error, reports, name, base, previous)
        return result

    def start() -> None:
        os.makedirs(base, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)

    def finish(files: dict) -> None:
        meta = {"step": step, "strategy": strategy.name, "world_size": strategy.world_size,
                "config_hash": train_state.get("config_hash"), "time": time.time(), "files": files}
        with open(os.path.join(tmp, META), "w") as handle:  # last: the folder is now a checkpoint
            json.dump(meta, handle, indent=1)
        _fsync_tree(tmp)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(tmp, final)
        write_atomically(os.path.join(base, LATEST), name, fsync=True)
        prune(workdir, keep)

    phase(start, everyone=False)
    phase(lambda: strategy.save(tmp, train_state))
    names = distributed.broadcast_object(_listing(tmp) if strategy.is_main else None)
    mine = phase(lambda: {n: _digest(os.path.join(tmp, n)) for n in _share(names)})
    files = {n: entry for part in distributed.gather_objects(mine) for n, entry in part.items()}
    phase(lambda: finish(dict(sorted(files.items()))), everyone=False)
    return final


def _describe_failure(error: BaseException, tmp: str) -> tuple[bool, str]:
    """(whether the storage is to blame, the error in one line) for the other ranks."""
    cause = storage_cause(error)
    if cause is not None:
        return True, cause.strerror or str(cause)
    if _disk_full(tmp):
        # torch.save to a path (DeepSpeed's writer) turns ENOSPC into "[enforce fail at
        # inline_container.cc] unexpected pos": the errno is gone, the empty disk is not.
        return True, os.strerror(errno.ENOSPC)
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return False, f"{type(error).__name__}: {first}"


def _disk_full(path: str) -> bool:
    folder = path
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        return shutil.disk_usage(folder or ".").free < 2**20
    except OSError:
        return False


def _save_failed(error: BaseException | None, reports: list, name: str, base: str,
                 previous: str | None) -> BaseException:
    """The error every rank raises after a failed save: a StorageError where the storage refused."""
    rank, (storage, text) = next((r, report) for r, report in enumerate(reports) if report is not None)
    if error is not None and not storage:
        return error  # a bug, not the disk: keep its traceback
    where = "" if len(reports) == 1 else f" (rank {rank})"
    if not storage:
        return RuntimeError(f"checkpoint {name} failed on another rank{where}: {text}")
    kept = (f"the previous checkpoint ({os.path.basename(previous)}) and `latest` are untouched"
            if previous else "no earlier checkpoint existed")
    result = StorageError(f"could not write checkpoint {name} in {base}{where}: {text}; {kept}, the temporary "
                          "folder was removed; free space (or fix the permissions) and run the same command "
                          "to resume")
    result.__cause__ = error
    result.every_rank = True  # the same message on every rank: launch/run.py prints it once
    return result


def _listing(folder: str) -> list[str]:
    """Every file under `folder` (relative, sorted) but meta.json: what a manifest covers."""
    names = []
    for current, _, files in os.walk(folder):
        for file in files:
            rel = os.path.relpath(os.path.join(current, file), folder)
            if rel != META:
                names.append(rel)
    return sorted(names)


def _share(names: list[str]) -> list[str]:
    """This rank's part of `names`: the ranks hash or check a checkpoint in parallel."""
    return names[distributed.rank()::distributed.world_size()]


def _digest(path: str) -> dict[str, Any]:
    """Size and SHA-256 of a file."""
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": hasher.hexdigest()}


def pickle_globals(data: bytes) -> set[str]:
    """The globals (`module.name`) a pickle would import, read from its opcodes without running
    anything. A global whose name is computed (not two literal strings) comes back as COMPUTED."""
    found, recent, memo = set(), [], {}
    for op, arg, _ in pickletools.genops(data):
        kind = op.name
        if kind in ("FRAME", "PROTO"):
            continue
        if kind == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif kind in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = recent[-1] if recent else None
        elif kind in ("GET", "BINGET", "LONG_BINGET"):
            recent.append(memo.get(arg))
        elif kind in ("GLOBAL", "INST"):
            found.add(arg.replace(" ", "."))
            recent.append(None)
        elif kind == "STACK_GLOBAL":
            module, qualname = (recent[-2:] if len(recent) >= 2 else [None, None])
            found.add(f"{module}.{qualname}" if isinstance(module, str) and isinstance(qualname, str) else COMPUTED)
            recent.append(None)
        elif kind.startswith("EXT"):
            found.add(COMPUTED)  # the copyreg extension registry: a global by number
        else:
            recent.append(arg if isinstance(arg, str) else None)
        del recent[:-2]
    return found


def _allowed_globals() -> set[str]:
    from torch import _weights_only_unpickler as safe
    return set(safe._get_allowed_globals()) | set(safe._get_user_allowed_globals()) | LIBRARY_GLOBALS


def refused_globals(path: str) -> list[str]:
    """The globals a pickle in `path` would import that are not on the allowlist (sorted; empty
    for a file without a pickle). Reads torch.save's zip files (their `.pkl` records) and DCP's
    `.metadata`. ValueError when the file cannot be parsed (truncated, not what its name says)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
        if head.startswith(b"PK"):
            try:
                with zipfile.ZipFile(handle) as archive:
                    pickles = [archive.read(n) for n in archive.namelist() if n.endswith(".pkl")]
            except (zipfile.BadZipFile, EOFError, OSError) as error:
                raise ValueError(f"not a readable zip archive ({error})") from None
        elif os.path.basename(path) == ".metadata" or path.endswith(".pkl"):
            handle.seek(0)
            pickles = [handle.read()]
        else:
            return []
    allowed = _allowed_globals()
    refused = set()
    for data in pickles:
        try:
            refused |= pickle_globals(data) - allowed
        except Exception as error:  # noqa: BLE001 - pickletools raises ValueError, IndexError, ...
            raise ValueError(f"a malformed pickle ({type(error).__name__})") from None
    return sorted(refused)


def _problem(folder: str, rel: str, expected: dict | None) -> str | None:
    """What is wrong with one file of a checkpoint (None: intact and safe)."""
    path = os.path.join(folder, rel)
    if not os.path.isfile(path):
        return f"{rel} is missing"
    damage = None
    if expected is not None:
        actual = os.path.getsize(path)
        if actual != expected["bytes"]:
            damage = f"{rel} has {actual} bytes, {expected['bytes']} were written"
        elif _digest(path)["sha256"] != expected["sha256"]:
            damage = f"{rel} does not match the SHA-256 recorded when it was written"
    try:
        refused = refused_globals(path)
    except ValueError as error:
        return damage or f"{rel} cannot be read: {error}"
    if refused:
        return (f"{rel} holds a pickle that would call {', '.join(refused[:3])}, which a checkpoint never "
                "holds; nothing was loaded from it")
    return damage


def problems(path: str, names: list[str] | None = None) -> list[str]:
    """What is wrong with the checkpoint at `path` (empty: intact and safe to load), checking the
    files `names` (default: all). One process; see `check` for the collective version."""
    manifest = _manifest(path)
    if isinstance(manifest, str):
        return [manifest]
    if names is None:
        names = sorted(manifest) if manifest is not None else _listing(path)
    # A checkpoint written before manifests existed is checked for unsafe pickles only.
    found = [_problem(path, rel, None if manifest is None else manifest.get(rel)) for rel in names]
    return [p for p in found if p is not None]


def check(path: str) -> str | None:
    """None if the checkpoint at `path` is intact and safe, else the first problem in one clause.
    Collective under torchrun: the ranks check shares of the files and all get the same answer."""
    if distributed.world_size() == 1:
        found = problems(path)
        return found[0] if found else None
    manifest = distributed.broadcast_object(_manifest(path) if distributed.rank() == 0 else None)
    if isinstance(manifest, str):
        return manifest  # meta.json itself is unreadable
    names = sorted(manifest) if manifest is not None else _listing(path)
    found = [p for part in distributed.gather_objects(problems(path, _share(names))) for p in part]
    return found[0] if found else None


def _manifest(path: str) -> dict | None | str:
    """The files meta.json lists (None: written before checkpoints had manifests), or why it
    cannot be read."""
    try:
        with open(os.path.join(path, META)) as handle:
            return json.load(handle).get("files")
    except (OSError, ValueError, AttributeError) as error:
        return f"{META} cannot be read ({getattr(error, 'strerror', None) or error})"


def candidates(workdir: str) -> list[str]:
    """The finished checkpoints a restart may resume from, in the order it tries them: the one
    `latest` names, then the others newest first."""
    first = latest(workdir)
    rest = [path for _, path in reversed(complete_checkpoints(workdir)) if path != first]
    return ([first] if first else []) + rest


def newest_intact(workdir: str) -> tuple[str | None, list[str]]:
    """The checkpoint to resume from and one line per damaged checkpoint skipped on the way.

    Collective: every rank checks its share and all agree on the answer. Rank 0 sets the damaged
    ones aside (renamed `damaged-step_...`, outside retention) and points `latest` at the chosen
    one. None when there is no checkpoint; a RefusedFile (exit code 2) when none is intact."""
    tried = distributed.broadcast_object(candidates(workdir) if distributed.rank() == 0 else None)
    damaged: list[tuple[str, str]] = []
    for path in tried:
        problem = check(path)
        if problem is None:
            notes = [f"checkpoint {p} cannot be used: {why}; skipped" for p, why in damaged]
            if damaged and distributed.rank() == 0:
                notes = _set_aside(workdir, damaged, path)
            distributed.barrier()
            return path, notes
        damaged.append((path, problem))
    if damaged:
        error = RefusedFile(_none_usable(root(workdir), damaged)
                            + f"; restore one from a copy, or move {root(workdir)} away to start from scratch")
        error.every_rank = True  # all ranks agreed: launch/run.py prints it once
        raise error
    return None, []


def _none_usable(where: str, damaged: list[tuple[str, str]]) -> str:
    newest, why = damaged[0]
    older = (f" (nor can the {len(damaged) - 1} older one{'s' if len(damaged) > 2 else ''})"
             if len(damaged) > 1 else "")
    return f"no checkpoint in {where} can be used: {os.path.basename(newest)}: {why}{older}"


def _set_aside(workdir: str, damaged: list[tuple[str, str]], chosen: str) -> list[str]:
    """Rename damaged checkpoints out of retention's way (`damaged-step_...`) and point `latest`
    at `chosen`; one line per damaged checkpoint."""
    notes = []
    for path, why in damaged:
        aside = os.path.join(os.path.dirname(path), DAMAGED_PREFIX + os.path.basename(path))
        try:
            shutil.rmtree(aside, ignore_errors=True)
            os.rename(path, aside)
            notes.append(f"checkpoint {path} cannot be used: {why}; set aside as {os.path.basename(aside)}")
        except OSError as error:
            notes.append(f"checkpoint {path} cannot be used: {why}; skipped (could not rename it: {error.strerror})")
    try:
        write_atomically(os.path.join(root(workdir), LATEST), os.path.basename(chosen), fsync=True)
    except OSError:
        pass  # `latest` still names a damaged checkpoint: the next restart skips it again
    return notes


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
    """Restore a checkpoint (verified by `newest_intact`) into a prepared strategy; return this
    rank's train state."""
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


def load_weights(path: str, *, name: str = "train.init_from") -> dict[str, torch.Tensor]:
    """Weights for `train.init_from` (or the binding `name`): a safetensors file, or a checkpoint
    or run folder (verified first). Anything else is a RefusedFile that says what to give."""
    if os.path.isdir(path):
        return consolidated_state_dict(resolve(path, name=name))
    if not os.path.isfile(path):
        raise ConfigError(f"{name}: no such file {path!r}")
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RefusedFile(f"{name} = {path!r} is not a safetensors file ({detail}); give a .safetensors export "
                          "(python launch/export.py RUN --out model.safetensors) or a checkpoint folder") from None


def load_into(module: torch.nn.Module, weights: dict[str, torch.Tensor], *, name: str, path: str) -> None:
    """Load `weights` into `module`, all of them and nothing else; a RefusedFile names the first
    tensor that does not fit, with both shapes, or the first one missing on either side."""
    own = module.state_dict()
    for key, mine in own.items():  # the model's order: "first" is the first a reader of the model meets
        if key in weights and tuple(weights[key].shape) != tuple(mine.shape):
            raise RefusedFile(f"{name} = {path!r} does not match the model: tensor {key!r} has shape "
                              f"{list(weights[key].shape)} in the file and {list(mine.shape)} in the model")
    try:
        missing, unexpected = module.load_state_dict(weights, strict=False)
    except RuntimeError as error:  # a model that renames keys on load (models/prompting.py)
        detail = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line),
                      str(error).strip().splitlines()[0])
        raise RefusedFile(f"{name} = {path!r} does not match the model: {detail}") from None
    if missing or unexpected:
        first = (f"the model's tensor {missing[0]!r} is not in the file" if missing
                 else f"the file's tensor {unexpected[0]!r} is not in the model")
        raise RefusedFile(f"{name} = {path!r} does not match the model: {first} ({len(missing)} missing: "
                          f"{list(missing)[:3]}, {len(unexpected)} unexpected: {list(unexpected)[:3]})")
