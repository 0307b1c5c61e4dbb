"""Paper reproductions at CPU scale: each trains a set of gin configurations and writes a table
and plots under results/<name>/.

    python launch/reproduce.py NAME [options]     # NAME: one of launch/reproductions/*.py
"""
from __future__ import annotations

import sys

import launch.reproductions as reproductions
from launch.dispatch import dispatch


def main(argv: list[str] | None = None) -> int:
    return dispatch(reproductions, "launch/reproduce.py", argv)


if __name__ == "__main__":
    sys.exit(main())
