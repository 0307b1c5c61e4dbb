"""Paper reproductions at CPU scale: each trains a set of gin configurations and writes a table
and plots under results/<name>/.

    python launch/reproduce.py NAME [options]     # NAME: one of launch/reproductions/*.py
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

import launch.reproductions as reproductions


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(reproductions.__path__) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in available():
        print(f"usage: launch/reproduce.py {{{','.join(available()) or '...'}}} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"launch.reproductions.{argv[0]}")
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
