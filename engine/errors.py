"""Errors a user can act on.

`launch/run.py` prints a `ConfigError` as one clear message and exits with code 2, so every
check that can blame the configuration (rather than the code) raises this type; its kinds
`RefusedFile` and `RunDirectoryBusy` say what was refused. A write the storage refused (a full
disk, a quota, no permission) is a `StorageError`, exit code 3. The common
checks (a count, a bounded number, a (low, high) range) are spelled once here, so every message
names the binding, shows what was given and says what would be right.
"""
import errno
import math
from typing import Any


class ConfigError(ValueError):
    """The configuration asks for something that cannot work; the message says how to fix it."""

    #: What `launch/run.py` prints before the message (exit code 2 for every ConfigError).
    label = "config error"


class RefusedFile(ConfigError):
    """A file the run was pointed at cannot be used: a pickle that would run code, the wrong
    format, weights that do not fit the model, a damaged checkpoint with no intact one before it."""

    label = "refused file"


class RunDirectoryBusy(ConfigError):
    """Another live process writes this run directory; the message names it (pid, host, start)."""

    label = "run directory in use"


#: The errnos that mean the storage, not the program, refused a write: no space, over quota,
#: no permission, a read-only filesystem.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS})


class StorageError(RuntimeError):
    """Writing the run's files failed because of the storage (full, over quota, not writable).
    What was saved before is intact; `launch/run.py` prints one line and exits with code 3."""

    label = "storage error"
    exit_code = 3


def storage_cause(error: BaseException | None) -> OSError | None:
    """The OSError with a storage errno (STORAGE_ERRNOS) behind `error`, following causes,
    contexts and the per-rank failures of torch.distributed.checkpoint; None if there is none.
    (Libraries wrap disk errors: DCP in a CheckpointException, DeepSpeed's torch.save in a
    RuntimeError that has lost the errno - see `engine.checkpoint.save` for that case.)"""
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in STORAGE_ERRNOS:
            return current
        pending += [current.__cause__, current.__context__]
        failures = getattr(current, "failures", None)  # torch.distributed.checkpoint's CheckpointException
        if isinstance(failures, dict):
            pending += [f[0] if isinstance(f, tuple) else f for f in failures.values()]
    return None


def require(condition: bool, message: str) -> None:
    """Raise a ConfigError with `message` unless `condition` holds."""
    if not condition:
        raise ConfigError(message)


def _bounds(low: float | None, high: float | None, above: float | None = None, below: float | None = None) -> str:
    """The allowed range in words: ' >= 1', ' > 0', ' in [0, 8]', ' in [0, 1)', or '' for none."""
    left = f"[{low}" if low is not None else f"({above}" if above is not None else None
    right = f"{high}]" if high is not None else f"{below})" if below is not None else None
    if left and right:
        return f" in {left}, {right}"
    if left:
        return f" >= {low}" if low is not None else f" > {above}"
    if right:
        return f" <= {high}" if high is not None else f" < {below}"
    return ""


def _outside(value: float, low: float | None, high: float | None,
             above: float | None = None, below: float | None = None) -> bool:
    return ((low is not None and value < low) or (high is not None and value > high)
            or (above is not None and value <= above) or (below is not None and value >= below))


def _wrong(name: str, wanted: str, value: Any, hint: str) -> ConfigError:
    return ConfigError(f"{name} must be {wanted}, got {value!r}" + (f"; {hint}" if hint else ""))


def require_int(value: Any, name: str, *, low: int | None = None, high: int | None = None, hint: str = "") -> int:
    """Return `value` if it is an integer in [low, high] (bounds inclusive, either optional); else
    raise a ConfigError naming the binding, what was given and what would be right.

    A bool is refused: gin reads `True` for a typo'd count as happily as `1`. `hint` (one clause)
    is appended to the message, to say why the bound is what it is.
    """
    if isinstance(value, bool) or not isinstance(value, int) or _outside(value, low, high):
        raise _wrong(name, f"an integer{_bounds(low, high)}", value, hint)
    return value


def require_number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                   above: float | None = None, below: float | None = None, hint: str = "") -> float:
    """`require_int` for real numbers (an int is a number; a bool or NaN is not): `low` / `high`
    are inclusive bounds, `above` / `below` exclusive ones (a temperature > 0, a decay < 1)."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or math.isnan(value) or _outside(value, low, high, above, below)):
        raise _wrong(name, f"a number{_bounds(low, high, above, below)}", value, hint)
    return value


def require_interval(value: Any, name: str, *, low: float | None = None, high: float | None = None,
                     integer: bool = True) -> tuple:
    """Return a `(first, second)` pair (integers, or floats when not `integer`) with
    `low <= first <= second <= high`; else raise a ConfigError saying so."""
    order = " <= ".join([*([f"{low}"] if low is not None else []), "low", "high",
                         *([f"{high}"] if high is not None else [])])
    wrong = _wrong(name, f"a (low, high) pair of {'integers' if integer else 'numbers'} with {order}", value, "")
    check = require_int if integer else require_number
    try:
        first, second = value
        first, second = check(first, name, low=low, high=high), check(second, name, low=low, high=high)
    except (TypeError, ValueError):  # not a pair, or an element out of type or range (a ConfigError)
        raise wrong from None
    if first > second:
        raise wrong
    return (first, second) if integer else (float(first), float(second))
