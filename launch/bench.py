"""Benchmarks that print ratios against a baseline run in the same process (the machine is noisy).

    python launch/bench.py overhead            # engine train() vs a bare PyTorch loop
    python launch/bench.py NAME --help         # each benchmark's own options

Each benchmark lives in launch/benchmarks/NAME.py and exposes `main(argv)`. A run also records its
figures with provenance and load average in results/bench/NAME.json (at the default options; `--out`
for others, `--no-save` for none) through launch/benchmarks/_record.py; README and docs render them.
"""
from __future__ import annotations

import sys

import launch.benchmarks as benchmarks
from launch.dispatch import dispatch


def main(argv: list[str] | None = None) -> int:
    return dispatch(benchmarks, "launch/bench.py", argv)


if __name__ == "__main__":
    sys.exit(main())
