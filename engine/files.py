"""Files that appear whole or not at all: written beside their final name, then renamed over it,
so a crash, a preemption or a concurrent reader never sees half a file.

(Whole folders - a checkpoint, a data cache - are staged and renamed by their owners, which know
whether an existing folder is replaced or kept.)
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str, *, suffix: str = "", fsync: bool = False) -> Iterator[str]:
    """Yield a temporary path beside `path` for the caller to write; when the block ends without
    an error, that file replaces `path` (after reaching the disk, with `fsync`). On an error the
    temporary file is removed and `path` is left as it was.

    `suffix` ends the temporary name, for writers that insist on an extension (`np.savez` adds
    `.npz` to any path without it). The process id in the name keeps ranks that write the same
    file at once out of each other's way; the last rename wins, and every version is whole.
    """
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}{suffix}"
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomically(path: str, data: str | bytes, *, fsync: bool = False) -> None:
    """Write `data` (text or bytes) to `path` through `atomic_path`."""
    with atomic_path(path, fsync=fsync) as tmp:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as handle:
            handle.write(data)
