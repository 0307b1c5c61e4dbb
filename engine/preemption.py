"""SIGTERM / SIGINT handling: finish the current step, save a checkpoint, exit 0.

A second SIGINT falls back to Python's default (KeyboardInterrupt) so a user can still break
out at once.
"""
from __future__ import annotations

import signal
import threading


class StopRequest:
    """Set by a signal; the loop checks it after each step (agreed across ranks)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum, frame) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
