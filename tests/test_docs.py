"""The README and docs/ name files a reader will open or pass to a command: every relative link
and every gin file they name exists, so a moved file cannot leave a dead pointer behind."""
from __future__ import annotations

import glob
import itertools
import os
import re

import pytest

from tests.helpers import REPO

PAGES = ["README.md"] + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
LINK = re.compile(r"\]\(([^)\s]+)\)")
GIN_ARGUMENT = re.compile(r"--gin[ =]+([^\s'\"`),;\]]+)")
# gin/...gin anywhere in the text (commands, tables, prose); `{a,b}` and `<placeholder>` allowed.
GIN_PATH = re.compile(r"(?<![\w/.-])(gin/(?:[\w./*<>-]|\{[\w,]+\})*\.gin)\b")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*(\.gin)?$|\.\.\.")  # FILE, MORE.gin, ...
# A file the page itself creates: a fenced block whose first line is `# path/to/file`.
CREATED = re.compile(r"^```\w*\n# (\S+)\n", re.M)


def expand(path: str) -> list[str]:
    """`a{1,2}.gin` -> [a1.gin, a2.gin]; `<name>` becomes a wildcard."""
    path = re.sub(r"<[^>]+>", "*", path)
    parts = re.split(r"\{([^}]*)\}", path)
    choices = [[part] if i % 2 == 0 else part.split(",") for i, part in enumerate(parts)]
    return ["".join(combo) for combo in itertools.product(*choices)]


def exists(path: str) -> bool:
    return bool(glob.glob(path)) if "*" in path else os.path.exists(path)


def named_paths(page: str) -> list[tuple[str, str]]:
    """(what the page says, where that is in the repository) for each link and gin path."""
    with open(os.path.join(REPO, page)) as handle:
        text = handle.read()
    found = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        found.append((target, os.path.join(REPO, os.path.dirname(page), target.split("#")[0])))
    created = set(CREATED.findall(text))
    for argument in GIN_ARGUMENT.findall(text):
        if argument.endswith(".gin") and not PLACEHOLDER.search(argument) and argument not in created:
            found.append((argument, os.path.join(REPO, argument)))
    for path in GIN_PATH.findall(text):
        found.append((path, os.path.join(REPO, path)))
    return found


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_and_gin_path_exists(page):
    named = named_paths(page)
    assert named, f"{page} names no file: the patterns no longer match the page"
    missing = sorted({said for said, where in named if not all(exists(p) for p in expand(where))})
    assert not missing, f"{page} names files that do not exist: {missing}"


def test_brace_and_placeholder_expansion():
    assert expand("gin/strategy/deepspeed_zero{1,2,3}.gin") == [
        "gin/strategy/deepspeed_zero1.gin", "gin/strategy/deepspeed_zero2.gin", "gin/strategy/deepspeed_zero3.gin"]
    assert expand("gin/lra/<task>_small.gin") == ["gin/lra/*_small.gin"]
