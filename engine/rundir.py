"""One writer per run directory: an OS lock (`flock`) on `<workdir>/run.lock`.

Two processes that both wrote one folder (a double submit, a SLURM requeue while the old job
still runs) interleaved their metrics and raced on checkpoint renames. The run holds the lock
from before it touches the folder until it ends; the kernel drops it when the process dies, so
kill -9, a preemption or a crashed node never leaves a stale lock, and a restart (`--max-restarts`,
`--requeue`) after the old process is gone takes it again.

Under torchrun rank 0 takes the lock and tells the other ranks the outcome (a broadcast) before
any of them reads or writes the folder, so a refused job ends on every rank. A process may take
the same lock again (a program locks its run directory, then `train` locks it or a stage
sub-folder): a per-process count makes that re-entrant instead of a self-deadlock. Forked
children (data-loader workers) close their inherited descriptor, so they never keep a dead
run's lock alive. On network filesystems `flock` works where the filesystem supports locks
(NFSv4; Lustre mounted with `-o flock`).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from typing import Iterator

from engine import distributed
from engine.errors import STORAGE_ERRNOS, RunDirectoryBusy, StorageError

LOCK_FILE = "run.lock"

# realpath of the run directory -> [descriptor holding the lock, how many holders in this process]
_HELD: dict[str, list[int]] = {}


def _forget_in_child() -> None:
    """A forked child shares the parent's lock; closing its copy of the descriptor leaves the
    parent's lock in place (flock is released only when the last descriptor closes), and the
    child no longer keeps it alive should the parent die first."""
    for fd, _ in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def lock_path(workdir: str) -> str:
    return os.path.join(workdir, LOCK_FILE)


def holder(workdir: str) -> str:
    """Who holds (or last held) the lock, in words: 'pid 123 on host node0, started 2026-01-02 03:04:05'."""
    try:
        with open(lock_path(workdir)) as handle:
            record = json.load(handle)
        return f"pid {record['pid']} on host {record['host']}, started {record['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not recorded its pid yet)"


def _not_writable(workdir: str, error: OSError) -> StorageError:
    return StorageError(f"the run directory {workdir} is not writable ({error.strerror}); "
                        "make it writable or pass another --workdir")


def _acquire(workdir: str) -> tuple[str, str] | None:
    """Take the lock in this process; None when held, else (error class name, one-line message)."""
    key = os.path.realpath(workdir)
    if key in _HELD:
        _HELD[key][1] += 1
        return None
    try:
        os.makedirs(workdir, exist_ok=True)
        fd = os.open(lock_path(workdir), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        if error.errno in STORAGE_ERRNOS:
            return ("StorageError", str(_not_writable(workdir, error)))
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        for _ in range(20):  # the holder writes its record right after locking: give it a moment
            who = holder(workdir)
            if not who.startswith("another process"):
                break
            time.sleep(0.05)
        return ("RunDirectoryBusy", f"{workdir} is held by {who}; wait for that run to end (or stop "
                                    "it), or pass another --workdir")
    record = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "rank": distributed.env_rank()}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except OSError as error:
        os.close(fd)
        if error.errno in STORAGE_ERRNOS:
            return ("StorageError", str(_not_writable(workdir, error)))
        raise
    _HELD[key] = [fd, 1]
    return None


def _release(workdir: str) -> None:
    key = os.path.realpath(workdir)
    entry = _HELD.get(key)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:
        del _HELD[key]
        os.close(entry[0])  # the last descriptor: the kernel drops the lock


def held(workdir: str) -> bool:
    """Whether this process holds the lock of `workdir`."""
    return os.path.realpath(workdir) in _HELD


@contextlib.contextmanager
def exclusive(workdir: str) -> Iterator[None]:
    """Hold `workdir`'s lock for the block: rank 0 takes it, every rank learns the outcome.

    Raises RunDirectoryBusy (exit code 2) naming the holder where another live process has it,
    and StorageError (exit code 3) where the folder cannot be written; in both cases before
    anything in the folder changed. Under torchrun this starts the process group (the strategy's
    `setup` would start it a moment later anyway)."""
    distributed.init_process_group()
    main = distributed.rank() == 0
    refusal = distributed.broadcast_object(_acquire(workdir) if main else None)
    if refusal is not None:
        kind, message = refusal
        error = (RunDirectoryBusy if kind == "RunDirectoryBusy" else StorageError)(message)
        error.every_rank = True  # every rank raises it; launch/run.py prints it once, on rank 0
        raise error
    try:
        yield
    finally:
        if main:
            _release(workdir)
