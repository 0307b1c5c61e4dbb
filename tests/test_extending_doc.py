"""docs/extending.md's walk-through works as written: its Python and gin blocks, copied into a
scratch folder, register a task and a model, and the page's own command trains them (shortened
to 100 steps) with a falling loss and accuracy above chance. Edit the page and this test runs the
edited code."""
from __future__ import annotations

import os
import re
import shlex

from tests.helpers import REPO

PAGE = os.path.join(REPO, "docs", "extending.md")


def created_files() -> dict[str, str]:
    """{relative path: text} of every fenced block whose first line is `# <path>`."""
    with open(PAGE) as handle:
        text = handle.read()
    return {path: body for path, body in re.findall(r"^```(?:python|gin)\n# (\S+)\n(.*?)^```", text, re.S | re.M)}


def page_commands() -> list[list[str]]:
    """The `launch/run.py` commands of the page's bash blocks, environment assignments dropped."""
    with open(PAGE) as handle:
        text = handle.read()
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in block.splitlines():
            words = [w for w in shlex.split(line, comments=True) if not re.match(r"^[A-Z_]+=", w)]
            if words[:2] == ["python", "launch/run.py"] and "my_experiments" in line:
                commands.append(words[2:])
    return commands


def test_the_walk_through_trains_its_toy_task(tmp_path, monkeypatch, capsys):
    from engine import config
    from engine.logging import read_metrics
    from launch.run import main
    files = created_files()
    assert {"my_experiments/sum_task.py", "my_experiments/digit_mlp.py", "my_experiments/sum_mlp.gin"} <= set(files)
    for path, body in files.items():
        os.makedirs(tmp_path / os.path.dirname(path), exist_ok=True)
        (tmp_path / path).write_text(body)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # the page's PYTHONPATH=$PWD

    dry_run, train = page_commands()
    assert "--print-config" in dry_run and "--print-config" not in train
    config.reset()
    assert main(dry_run) == 0
    shown = capsys.readouterr().out
    assert "train.task = @SumMod10()" in shown and "# parameters: " in shown

    workdir = str(tmp_path / "run")
    config.reset()
    assert main(train + ["--bind", "train.steps = 100", "--bind", "train.log_every = 10",
                         "--bind", "train.eval_every = 100", "--workdir", workdir]) == 0
    records = read_metrics(workdir)
    losses = [r["loss"] for r in records if r["split"] == "train"]
    final = [r for r in records if r["split"] == "eval"][-1]
    assert len(losses) == 10 and losses[-1] < losses[0] - 0.5, losses
    assert final["accuracy"] > 0.3, final  # chance is 0.1
