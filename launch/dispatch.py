"""One dispatcher for the commands that pick a module by name from a package (bench.py,
reproduce.py): `NAME [options]` runs `<package>.NAME.main(options)`."""
from __future__ import annotations

import importlib
import pkgutil
import sys
from types import ModuleType


def available(package: ModuleType) -> list[str]:
    """The runnable modules of `package` (names starting with '_' are its private helpers)."""
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_"))


def dispatch(package: ModuleType, command: str, argv: list[str] | None = None) -> int:
    """Run the module named by argv[0] with the rest; usage and exit code 2 for an unknown name."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names = available(package)
    if not argv or argv[0] not in names:
        print(f"usage: {command} {{{','.join(names) or '...'}}} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{package.__name__}.{argv[0]}")
    return module.main(argv[1:]) or 0
