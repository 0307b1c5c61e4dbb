"""One-line errors for the files a run reads (data sets, local weights): a missing file, one that
cannot be read or parsed, a bad row or label becomes a ConfigError that names the file and, where
there is one, the line or record. Loaders raise them while they build the task, so
`launch/run.py` prints one line (exit code 2) before training starts instead of a traceback, and
no wrong label slips through. Loaders check as they read: the happy path makes no second pass.
"""
from __future__ import annotations

import contextlib
import math
import os
from typing import Iterator

from engine.errors import ConfigError

#: What reading or parsing a file raises when the file is at fault (SyntaxError: Pillow's
#: "broken PNG file"; EOFError: a stream cut short; ValueError: numpy, json, a bad number).
READ_ERRORS = (OSError, ValueError, EOFError, SyntaxError)


def where(path: str, *, line: int | None = None, record: int | None = None) -> str:
    """'path', 'path, line 3' (1-based, as an editor counts) or 'path, record 17' (0-based)."""
    return f"{path}, line {line}" if line is not None else f"{path}, record {record}" if record is not None else path


def file_error(path: str, problem: str, *, line: int | None = None, record: int | None = None) -> ConfigError:
    """A ConfigError '<path>[, line N | , record N]: <problem>'."""
    return ConfigError(f"{where(path, line=line, record=record)}: {problem}")


def reason(error: BaseException) -> str:
    """The first line of what `error` says (OSError: its strerror, without the path twice)."""
    text = getattr(error, "strerror", None) or str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def require_file(path: str, what: str = "") -> str:
    """`path` if it is a file; else a ConfigError naming it (and, with `what`, what it holds)."""
    if not os.path.isfile(path):
        problem = "is a directory, not a file" if os.path.isdir(path) else "no such file"
        raise file_error(path, problem + (f" ({what})" if what else ""))
    return path


@contextlib.contextmanager
def reading(path: str, *, line: int | None = None, record: int | None = None,
            errors: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Turn an error raised while reading `path` (READ_ERRORS, plus `errors` such as csv.Error)
    into one ConfigError naming the file; ConfigErrors raised inside pass through unchanged."""
    try:
        yield
    except ConfigError:
        raise
    except READ_ERRORS + errors as error:
        problem = "no such file" if isinstance(error, FileNotFoundError) else f"cannot be read ({reason(error)})"
        raise file_error(path, problem, line=line, record=record) from error


def parse_label(field: str | bytes, num_classes: int, path: str, *, line: int | None = None,
                record: int | None = None, hint: str = "") -> int:
    """An integer label in [0, num_classes) from one field of a text file, else a ConfigError
    naming the file and line. Released TSVs write labels as floats ('1.0'), so an integral float
    is read; '1.5', 'nan' or 'x' is refused (int(float('1.5')) would silently make it 1), and so
    is a label outside the class range. `hint` (one clause) says how to widen the range."""
    text = (field.decode("utf-8", "replace") if isinstance(field, bytes) else field).strip()
    try:
        value = float(text)
    except ValueError:
        raise file_error(path, f"the label {text[:20]!r} is not a number", line=line, record=record) from None
    if not math.isfinite(value) or value != int(value):
        raise file_error(path, f"the label {text[:20]!r} is not an integer", line=line, record=record)
    label = int(value)
    if not 0 <= label < num_classes:
        raise file_error(path, f"the label {label} is outside the classes 0..{num_classes - 1}"
                         + (f"; {hint}" if hint else ""), line=line, record=record)
    return label
