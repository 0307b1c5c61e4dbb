"""Helpers for launch scripts that run many configurations in one process (reproductions, sweeps).

Gin is process-global, so each run resets it, parses its files and bindings, and calls the
configured program. A finished run found in its workdir is not trained again: resuming a
finished run just reports its final metrics.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterable, Iterator, Sequence

from engine import config, program
from engine.config import REPO_ROOT


def gin_path(name: str) -> str:
    """A gin file given relative to the repository (or absolute)."""
    return name if os.path.isabs(name) else os.path.join(REPO_ROOT, name)


@contextlib.contextmanager
def parsed_config(files: Sequence[str], bindings: Sequence[str]) -> Iterator[None]:
    """Gin holds `files` (relative to the repository) + `bindings`, parsed afresh, inside the
    block, and nothing after it: a reproduction builds or runs one configuration at a time."""
    config.import_packages()
    config.reset()
    try:
        config.parse([gin_path(f) for f in files], list(bindings))
        yield
    finally:
        config.reset()


def run_config(files: Sequence[str], bindings: Sequence[str], workdir: str) -> Any:
    """Parse `files` + `bindings` afresh and run the configured program in `workdir`."""
    with parsed_config(files, bindings):
        return program.main(workdir)


def markdown_table(rows: Iterable[dict[str, Any]], columns: Sequence[str], floatfmt: str = ".3f") -> str:
    """A GitHub-flavoured markdown table of `rows` restricted to `columns`."""
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return format(value, floatfmt)
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"
