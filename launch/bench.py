"""Benchmarks that print ratios against a baseline run in the same process (the machine is noisy).

    python launch/bench.py overhead            # engine train() vs a bare PyTorch loop
    python launch/bench.py NAME --help         # each benchmark's own options

Each benchmark lives in launch/benchmarks/NAME.py and exposes `main(argv)`.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

import launch.benchmarks as benchmarks


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in available():
        print(f"usage: launch/bench.py {{{','.join(available())}}} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"launch.benchmarks.{argv[0]}")
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
