"""Host memory of a CPU rank: give freed tensor memory back to the OS, and read what is resident.

glibc serves an allocation of at least its mmap threshold with a fresh mapping that `free` returns
to the OS, and everything smaller from its heap, which keeps freed memory resident for reuse. The
threshold starts at 128 KiB but rises to the size of every mapped block that is freed (up to
32 MiB): after the first few tensors are freed, a CPU process keeps nearly every tensor below
32 MiB in the heap, where the holes that freed ones leave mostly stay resident. Sharded training
frees large buffers all the time (gathered parameters, reduce-scatter inputs, optimizer
temporaries), so its peak resident set grew with every step and stayed far above what it held:
FSDP2 at 100M parameters (2 ranks, AdamW) peaked at 1,953 MB after 6 steps while holding under
900 MB, against 1,273 MB with the threshold fixed at 1 MiB (DDP: 2,251 vs 1,939 MB;
docs/design.md, "Sharding that pays").

`release_freed_memory` fixes the threshold (`mallopt(M_MMAP_THRESHOLD)`, which also stops it
from rising). Every multi-process strategy on the CPU calls it in `setup`; a one-process run is
left alone. What it costs: a buffer that a step frees and allocates again is mapped afresh and
page-faulted in every time (about 1.7-2x the minor page faults per step at 100M parameters).
$GINTRAIN_MMAP_THRESHOLD (bytes) picks another threshold, 0 keeps glibc's own behaviour, and a
MALLOC_MMAP_THRESHOLD_ set in the environment (glibc reads it at start-up) is left to glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import sys

THRESHOLD_ENV = "GINTRAIN_MMAP_THRESHOLD"
DEFAULT_THRESHOLD = 1 << 20  # 1 MiB: FSDP2 at 100M parameters peaks alike at 256 KiB, 600 MB higher at 8 MiB
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
_applied: int | None = None


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def set_malloc(mmap_threshold: int, trim_threshold: int | None = None) -> bool:
    """Set glibc's mmap threshold (and trim threshold) for this process: the one home for mallopt.
    False where this is not glibc or glibc refused."""
    libc = _libc()
    if libc is None or not libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(mmap_threshold)):
        return False
    return trim_threshold is None or bool(libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(trim_threshold)))


def trim() -> None:
    """Give the heap's free memory back to the OS now (glibc's malloc_trim), where it is glibc."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def mmap_threshold() -> int:
    """The threshold this process should use: $GINTRAIN_MMAP_THRESHOLD, else 1 MiB (0: glibc's own)."""
    text = os.environ.get(THRESHOLD_ENV, "").strip()
    if not text:
        return DEFAULT_THRESHOLD
    try:
        value = int(float(text))
    except ValueError:
        value = -1
    if value < 0:
        from engine.errors import ConfigError
        raise ConfigError(f"${THRESHOLD_ENV} must be a number of bytes (0 keeps glibc's own threshold), got {text!r}")
    return value


def release_freed_memory() -> int | None:
    """Fix glibc's mmap threshold so that freed tensors of at least that size go back to the OS.

    Returns the threshold set, or None where nothing was changed (not glibc, $GINTRAIN_MMAP_THRESHOLD=0,
    or MALLOC_MMAP_THRESHOLD_ set in the environment). Idempotent."""
    global _applied
    threshold = mmap_threshold()
    if threshold == 0 or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return None
    if _applied == threshold:
        return threshold
    if not set_malloc(threshold):
        return None
    _applied = threshold
    return threshold


def resident_mb() -> float:
    """This process's resident set now (MB); 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def peak_resident_mb() -> float:
    """This process's peak resident set so far (MB): the high-water mark, freed memory included."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024
