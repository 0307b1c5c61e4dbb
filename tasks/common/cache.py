"""Where generated data is cached: one place decides it for every task that caches.

Generated datasets (ListOps, Pathfinder, procedural rooms) are built once and read back by later
runs and by concurrent ranks; `$GINTRAIN_CACHE` moves the cache (e.g. to a fast local disk on a
cluster node), otherwise it lives in ~/.cache/gintrain.

Building one can take minutes and hundreds of MB (full-size ListOps), so a generator reports its
progress on stderr (`Progress`; also the LRA stand-ins, which are generated per run) and says where
the cache went and how big it is (`announce_cache`), once the work has taken longer than
`PROGRESS_DELAY` seconds; quicker work (every test's) prints nothing.
"""
from __future__ import annotations

import os
import sys
import time
from typing import IO

from engine.distributed import env_local_rank

CACHE_ENV = "GINTRAIN_CACHE"

#: Seconds of generation before any progress shows: short enough that nobody waits in silence,
#: long enough that tiny test-sized sets never print.
PROGRESS_DELAY = 3.0
#: Without a terminal, a progress line per quarter of the work, and one whenever this many seconds
#: passed without one.
LINE_EVERY = 60.0


def cache_root(explicit: str | None = None) -> str:
    """`explicit` if given, else $GINTRAIN_CACHE, else ~/.cache/gintrain (user-expanded)."""
    root = explicit or os.environ.get(CACHE_ENV) or os.path.join("~", ".cache", "gintrain")
    return os.path.expanduser(root)


def _size_of(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(folder, name))
               for folder, _, names in os.walk(path) for name in names)


def _seconds(elapsed: float) -> str:
    return f"{elapsed:.1f} s" if elapsed < 60 else f"{int(elapsed // 60)} min {int(elapsed % 60):02d} s"


class Progress:
    """Progress of one long data generation on stderr, shown once it has run `delay` seconds.

    On a terminal it is a tqdm bar; otherwise (a log file, a batch job) a line on first showing,
    one per quarter of the work or per `LINE_EVERY` seconds, and one at the end. Only local rank
    0 reports (every rank of a node builds the same cache). Use as a context manager and call
    `update(n)` as items are done.
    """

    def __init__(self, what: str, total: int, *, unit: str = "items", delay: float | None = None,
                 stream: IO[str] | None = None, enabled: bool | None = None) -> None:
        self.what, self.total, self.unit = what, max(int(total), 1), unit
        self.delay = PROGRESS_DELAY if delay is None else delay
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = env_local_rank() == 0 if enabled is None else enabled
        self.done = 0
        self.shown = False  # whether anything was written (the bar appeared or a line was printed)
        self.started = time.monotonic()
        self._last_line, self._last_quarter = 0.0, 0
        self.bar = None
        if self.enabled and _isatty(self.stream):
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, desc=what, unit=f" {unit}", unit_scale=False, delay=self.delay,
                            file=self.stream, dynamic_ncols=True, leave=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close(failed=exc_info[0] is not None)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
            return
        elapsed = self.elapsed
        if elapsed < self.delay:
            return
        quarter = 4 * self.done // self.total
        new_quarter = quarter > self._last_quarter and self.done < self.total  # the end has its own line
        if not self.shown or new_quarter or elapsed - self._last_line >= LINE_EVERY:
            percent = 100 * self.done / self.total
            self._line(f"{self.what}: {self.done:,} / {self.total:,} {self.unit} ({percent:.0f}%) "
                       f"after {_seconds(elapsed)}")
            self._last_line, self._last_quarter = elapsed, quarter

    def close(self, failed: bool = False) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.enabled and self.shown and not failed:
            self._line(f"{self.what}: done, {self.done:,} {self.unit} in {_seconds(self.elapsed)}")

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
        self.shown = True


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream: no bar
        return False


def announce_cache(path: str, started: float, what: str, *, delay: float | None = None,
                   stream: IO[str] | None = None) -> None:
    """Say where a freshly written cache is and how big, if building it (since `started`, a
    `time.monotonic()` reading) took longer than `delay` seconds; local rank 0 only."""
    elapsed = time.monotonic() - started
    if elapsed < (PROGRESS_DELAY if delay is None else delay) or env_local_rank() != 0:
        return
    print(f"{what}: wrote {_size_of(path) / 1e6:,.1f} MB to {path} in {_seconds(elapsed)}; later runs read "
          f"it back (delete it to rebuild; ${CACHE_ENV} moves the cache)",
          file=stream if stream is not None else sys.stderr, flush=True)
