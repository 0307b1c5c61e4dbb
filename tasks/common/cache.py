"""Where generated data is cached: one place decides it for every task that caches.

Generated datasets (ListOps, Pathfinder, procedural rooms) are built once and read back by later
runs and by concurrent ranks; `$GINTRAIN_CACHE` moves the cache (e.g. to a fast local disk on a
cluster node), otherwise it lives in ~/.cache/gintrain.
"""
from __future__ import annotations

import os

CACHE_ENV = "GINTRAIN_CACHE"


def cache_root(explicit: str | None = None) -> str:
    """`explicit` if given, else $GINTRAIN_CACHE, else ~/.cache/gintrain (user-expanded)."""
    root = explicit or os.environ.get(CACHE_ENV) or os.path.join("~", ".cache", "gintrain")
    return os.path.expanduser(root)
