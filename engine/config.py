"""Gin plumbing: register components, parse files and bindings, and explain what went wrong.

Every rank parses the same files and bindings (nothing gin-built is pickled across
processes). Gin's own errors are turned into one `ConfigError` line that names the file, the
line and the closest registered name, so `launch/run.py` can print it and exit with code 2.
"""
from __future__ import annotations

import difflib
import hashlib
import importlib
import inspect
import os
import pkgutil
import re
import tokenize
from collections import defaultdict
from typing import Iterable, Sequence

import gin

from engine.errors import ConfigError

#: The repository's top folder: where gin/, results/ and runs/ are found by every script.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_DIR = os.path.join(REPO_ROOT, "gin")
COMPONENT_PACKAGES = ("engine", "models", "tasks", "programs")


def import_packages(packages: Iterable[str] = COMPONENT_PACKAGES) -> None:
    """Import every module of `packages` so their `@gin.configurable`s are registered."""
    for name in packages:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, prefix=name + "."):
            importlib.import_module(info.name)


# --- include resolution ---------------------------------------------------------------------

_SEARCH_DIRS: list[str] = [GIN_DIR]
_INCLUDING: list[str] = []  # the files being parsed, innermost last
_gin_parse_config_file = gin.config.parse_config_file


def resolve_gin_path(path: str) -> str | None:
    """Where `path` is: as given (absolute or from the working directory) for top-level files;
    relative to the including file, then to the gin search folders, for includes."""
    if os.path.isabs(path):
        return path if os.path.isfile(path) else None
    folders = [os.path.dirname(_INCLUDING[-1])] if _INCLUDING else [os.getcwd()]
    folders += _SEARCH_DIRS + ([os.getcwd()] if _INCLUDING else [])
    for folder in folders:
        candidate = os.path.join(folder, path)
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return None


def _parse_config_file_resolving(config_file, skip_unknown=False, print_includes_and_imports=False):
    resolved = resolve_gin_path(config_file)
    if resolved is None:
        where = f" (included from {_INCLUDING[-1]})" if _INCLUDING else ""
        raise IOError(f"Unable to open file: {config_file}{where}.")
    _INCLUDING.append(resolved)
    try:
        return _gin_parse_config_file(resolved, skip_unknown, print_includes_and_imports)
    except tokenize.TokenError as error:
        raise ConfigError(f"gin syntax error in {os.path.relpath(resolved)}: {error.args[0]} "
                          "(an unclosed bracket or quote?)") from None
    finally:
        _INCLUDING.pop()


# gin's `include` statement calls this module-level function, so replacing it gives every
# include the resolution rules above.
gin.config.parse_config_file = _parse_config_file_resolving


# --- parsing --------------------------------------------------------------------------------

def parse(files: Sequence[str], bindings: Sequence[str] = (), *, gin_dirs: Sequence[str] = (GIN_DIR,)) -> None:
    """Parse gin `files` (later wins) then `bindings`; raise ConfigError on any mistake.

    `include` lines resolve relative to the including file, then to each of `gin_dirs`.
    """
    _SEARCH_DIRS[:] = list(gin_dirs)
    for path in files:
        if not os.path.isfile(path):
            candidates = [os.path.join(d, path) for d in gin_dirs]
            hint = next((c for c in candidates if os.path.isfile(c)), None)
            raise ConfigError(
                f"gin file not found: {path!r}"
                + (f" (did you mean {os.path.relpath(hint)!r}?)" if hint else "")
            )
    try:
        for path in files:
            _parse_config_file_resolving(path)
        for binding in bindings:
            gin.parse_config(binding)
        _check_macros_defined()
        gin.finalize()
    except ConfigError:
        raise
    except tokenize.TokenError as error:
        raise ConfigError(f"gin syntax error in a --bind: {error.args[0]} (an unclosed bracket or quote?)") from None
    except (ValueError, SyntaxError, OSError, TypeError, KeyError, ImportError) as error:
        raise translate_gin_error(error) from None


def _check_macros_defined() -> None:
    """Refuse `%NAME` references to macros that no file or binding defines."""
    bound = {scope for (scope, selector) in gin.config._CONFIG if selector == "gin.macro"}
    for (scope, selector), params in gin.config._CONFIG.items():
        for name, value in params.items():
            for item in gin.config._iterate_flattened_values(value):
                if isinstance(item, gin.config.ConfigurableReference) and item.configurable.name == "macro":
                    macro = item.scoped_selector.rsplit("/", 1)[0]
                    if macro not in bound:
                        short = selector.rsplit(".", 1)[-1]
                        owner = f"{scope}/{short}" if scope else short
                        raise ConfigError(f"{owner}.{name} uses macro %{macro}, which is never defined."
                                          f"{_suggest(macro, sorted(bound))}")


def reset() -> None:
    """Forget every binding (for programs and tests that parse several configurations)."""
    gin.clear_config()


def format_error(error: BaseException) -> str:
    """One readable message: gin's 'In call to configurable' trail becomes '(while building X in
    Y)', the innermost component and the outermost one (a core inside the model that holds it)."""
    lines = str(error).splitlines()
    trail = [re.search(r"In call to configurable '([^']+)'", line) for line in lines]
    built = [m.group(1) for m in trail if m and m.group(1) not in ("run", "train", "macro")]
    message = "\n".join(line for line, m in zip(lines, trail) if not m).strip()
    if not built:
        return message
    return message + f" (while building {built[0]}" + (f" in {built[-1]})" if built[-1] != built[0] else ")")


def registered_names() -> list[str]:
    """Every registered configurable, by its shortest unambiguous name and its full name."""
    names = set()
    for selector, configurable in gin.config._REGISTRY.items():
        names.add(selector)
        names.add(configurable.name)
    return sorted(names)


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _parameters_of(selector: str) -> list[str]:
    configurable = gin.config._REGISTRY.get_match(selector)
    if configurable is None:
        return []
    target = configurable.wrapped
    if inspect.isclass(target):
        target = target.__init__
    try:
        return [p for p in inspect.signature(target).parameters if p not in ("self", "cls")]
    except (TypeError, ValueError):
        return []


def translate_gin_error(error: BaseException) -> ConfigError:
    """Turn a gin parse or call error into a ConfigError that says where and what would be right."""
    text = str(error)
    if isinstance(error, SyntaxError) and not isinstance(error, ConfigError):
        where = f"{error.filename}, line {error.lineno}" if error.filename else f"line {error.lineno}"
        detail = (error.text or "").strip()
        bare = re.search(r"Failed to parse token '([^']*)'", f"{error.msg}\n{detail}")
        if bare and "malformed node or string" in error.msg:
            # gin reads values as Python literals: a bare word is neither a literal nor a @reference.
            statement = detail.splitlines()[-1].split(":", 1)[-1].strip()
            origin = "a --bind" if not error.filename or error.filename == "<string>" else where
            return ConfigError(f"value {bare.group(1)!r} in {statement!r} ({origin}) is not a number, list, "
                               f"@reference or quoted string: strings need quotes, e.g. '{bare.group(1)}'")
        return ConfigError(f"gin syntax error in {where}: {error.msg}" + (f": {detail}" if detail else ""))
    if isinstance(error, ImportError):
        match = re.search(r'In file "([^"]+)", line (\d+)', text)
        where = f" ({os.path.relpath(match.group(1))}, line {match.group(2)})" if match else ""
        return ConfigError(f"a gin `import` failed{where}: {text.splitlines()[0]}; install the package, "
                           "or remove the import (registered components need none)")
    location = ""
    match = re.search(r'In file "([^"]+)", line (\d+)', text)
    if match:
        location = f" ({match.group(1)}, line {match.group(2)})"
    elif "In bindings string" in text:
        location = " (in a --bind)"
    first_line = text.splitlines()[0] if text else type(error).__name__

    match = re.search(r"No configurable matching (?:reference )?'@?([^'()]+)", first_line)
    if match:
        name = match.group(1)
        return ConfigError(f"unknown configurable {name!r}{location}.{_suggest(name, registered_names())}"
                           " Run `launch/run.py --list` to see every registered name.")
    match = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", first_line)
    if match:
        owner, param = match.groups()
        known = _parameters_of(owner)
        return ConfigError(f"{owner!r} has no parameter {param!r}{location}.{_suggest(param, known)}"
                           + (f" Its parameters: {', '.join(known)}." if known else ""))
    match = re.search(r"^(\S+) set to `%gin.REQUIRED` but not subsequently overridden", first_line)
    if match:
        return ConfigError(f"missing required parameter: {match.group(1)} (the base file marks it "
                           "%gin.REQUIRED). Bind it in your gin file or with --bind.")
    match = re.search(r"Required bindings for `([^`]+)` not provided in config: \[(.*)\]", first_line)
    if match:
        owner, missing = match.groups()
        names = ", ".join(f"{owner}.{m.strip(chr(39))}" for m in missing.split(", "))
        return ConfigError(f"missing required parameter: {names}. Bind it in a gin file or with --bind.")
    match = re.search(r"Unable to open file: (\S+?)(?: \(included from ([^)]+)\))?\.$", first_line)
    if match:
        origin = f" (included from {os.path.relpath(match.group(2))}{location})" if match.group(2) else location
        return ConfigError(f"gin include not found: {match.group(1)!r}{origin}; includes resolve relative "
                           f"to the including file and to {os.path.relpath(GIN_DIR)!r}.")
    return ConfigError(f"{first_line}{location}")


_MISSING_ARGUMENT = re.compile(r"(\w+)(?:\.__init__)?\(\) missing \d+ required (?:keyword-only |positional )?"
                               r"arguments?: (.+)")
_UNEXPECTED_ARGUMENT = re.compile(r"(\w+)(?:\.__init__)?\(\) got an unexpected keyword argument '(\w+)'")


def translate_call_error(error: TypeError) -> ConfigError | None:
    """A configurable called without a required argument, or with one it does not take, as the
    binding to add or remove; None for any other TypeError (a bug, not a configuration mistake)."""
    first = str(error).splitlines()[0] if str(error) else ""
    owner = _configurable_in(str(error))
    match = _MISSING_ARGUMENT.match(first) or _UNEXPECTED_ARGUMENT.match(first)
    if owner is None or match is None or match.group(1) != owner.rsplit(".", 1)[-1]:
        return None  # raised inside the component, not by the call gin made
    match = _MISSING_ARGUMENT.match(first)
    if match:
        names = ", ".join(f"{owner}.{name.strip(chr(39))}" for name in re.split(r", | and ", match.group(2)))
        return ConfigError(f"missing required parameter: {names}. Bind it in a gin file or with --bind.")
    match = _UNEXPECTED_ARGUMENT.match(first)
    if match:
        known = _parameters_of(owner)
        return ConfigError(f"{owner!r} has no parameter {match.group(2)!r}.{_suggest(match.group(2), known)}")
    return None


def _configurable_in(text: str) -> str | None:
    """The innermost configurable a gin call error names ("In call to configurable 'MLP'")."""
    match = re.search(r"In call to configurable '([^']+)'", text)
    return match.group(1) if match else None


_BUDGET_LINE = re.compile(r"^(?:[\w.]+/)*train\.steps\s*=")


def config_difference(saved: str, new: str) -> str | None:
    """How `new` differs from the `saved` config.gin of a run, in anything but the step budget
    (`train.steps`, any scope): the first removed and added lines, or None when they agree."""
    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.splitlines()
                if line.strip() and not line.lstrip().startswith("#") and not _BUDGET_LINE.match(line.strip())]
    old_lines, new_lines = lines(saved), lines(new)
    removed = [line for line in difflib.unified_diff(old_lines, new_lines, lineterm="", n=0)
               if line.startswith("-") and not line.startswith("---")]
    added = [line for line in difflib.unified_diff(old_lines, new_lines, lineterm="", n=0)
             if line.startswith("+") and not line.startswith("+++")]
    if not removed and not added:
        return None
    shown = [f"was {removed[0][1:].strip()!r}" if removed else "", f"now {added[0][1:].strip()!r}" if added else ""]
    more = len(removed) + len(added) - sum(1 for part in shown if part)
    return ", ".join(part for part in shown if part) + (f" (+{more} more changed lines)" if more else "")


def bindings_tag(bindings: Sequence[str]) -> str:
    """A short, stable hash of the --bind values other than the step budget, for naming a run
    folder after what was asked (empty when there are none)."""
    kept = [b.strip() for b in bindings if not _BUDGET_LINE.match(b.strip())]
    if not kept:
        return ""
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()[:8]


def built(parameter: str):
    """What the bound value of `parameter` (e.g. 'train.task') builds: a `@Name()` or `@Name`
    reference is called with its own bindings, any other value comes back as it is. ValueError
    when nothing is bound."""
    value = gin.query_parameter(parameter)
    return value.scoped_configurable_fn() if isinstance(value, gin.config.ConfigurableReference) else value


# --- records --------------------------------------------------------------------------------

def config_text() -> str:
    """The explicit configuration (all files and bindings, resolved)."""
    return gin.config_str()


def operative_text() -> str:
    """Every parameter actually used so far, defaults included; re-parseable."""
    return gin.operative_config_str()


def config_hash() -> str:
    """A short hash of the explicit configuration, stored in checkpoints to spot changed runs."""
    return hashlib.sha256(config_text().encode()).hexdigest()[:16]


def list_components() -> str:
    """Every registered component, grouped by package, with the first line of its docstring."""
    groups: dict[str, dict[str, str]] = defaultdict(dict)
    for _, configurable in gin.config._REGISTRY.items():
        module = configurable.module or ""
        package = module.split(".")[0] or "(gin)"
        doc = inspect.getdoc(configurable.wrapped) or ""
        groups[package][configurable.name] = doc.strip().splitlines()[0] if doc.strip() else ""
    lines = []
    for package in sorted(groups):
        lines.append(f"{package}:")
        for name in sorted(groups[package]):
            summary = groups[package][name]
            lines.append(f"  {name:<32s} {summary}".rstrip())
        lines.append("")
    return "\n".join(lines)
