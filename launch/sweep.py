"""Sweep a grid of gin bindings and named macros; one JSONL record per finished run.

    python launch/sweep.py --gin gin/scaling/t5_span.gin \
        --grid 'SIZE=[cpu_d32_l2,cpu_d64_l2]' --grid 'ARCH=[vanilla,switch,mixer]' [--bind ...]
    python launch/sweep.py ... --torchrun 8      # print one torchrun command per unfinished run
    python launch/sweep.py ... --collect         # after a cluster ran them: write the records

A grid name with a dot is a binding (`--grid 'AdamW.lr=[1e-3,3e-3]'`). An upper-case name is
a named macro: `SIZE=tiny` includes `size/tiny.gin` from the folder of a --gin file (or from
gin/scaling/), and when no such file exists it binds the gin macro `SIZE = tiny`. Runs live in
`<out>/<run name>/`; a run already in `<out>/records.jsonl` is skipped, and an interrupted run
resumes from its checkpoint, so the same command finishes a sweep that was stopped.
"""
from __future__ import annotations

import argparse
import ast
import itertools
import json
import os
import re
import shlex
import statistics
import sys
from typing import Any, Sequence

from engine.config import GIN_DIR, REPO_ROOT

RECORDS = "records.jsonl"


def parse_axis(text: str) -> tuple[str, list[str]]:
    """'NAME=[a,b,c]' -> ('NAME', ['a', 'b', 'c']) (values kept as gin text)."""
    match = re.fullmatch(r"\s*([A-Za-z_][\w./]*)\s*=\s*\[(.*)\]\s*", text)
    if not match:
        raise ValueError(f"--grid {text!r}: expected NAME=[value,value,...]")
    values = [v.strip() for v in match.group(2).split(",") if v.strip()]
    if not values:
        raise ValueError(f"--grid {text!r} has no values")
    return match.group(1), values


def named_file(key: str, value: str, gin_files: Sequence[str]) -> str | None:
    """The gin file a named macro value selects, if there is one."""
    folders = [os.path.dirname(os.path.abspath(f)) for f in gin_files] + [os.path.join(GIN_DIR, "scaling"), GIN_DIR]
    for folder in folders:
        candidate = os.path.join(folder, key.lower(), f"{value}.gin")
        if os.path.isfile(candidate):
            return candidate
    return None


def plan(gin_files: Sequence[str], axes: Sequence[tuple[str, list[str]]],
         bindings: Sequence[str]) -> list[dict[str, Any]]:
    """Every grid point: its name, axis values, gin files and bindings."""
    runs = []
    for values in itertools.product(*(v for _, v in axes)):
        files, extra, point = list(gin_files), [], {}
        for (key, _), value in zip(axes, values):
            point[key] = value
            chosen = named_file(key, value, gin_files) if key.isupper() else None
            if chosen:
                files.append(chosen)
            else:
                extra.append(f"{key} = {value if _is_gin_literal(value) else repr(value)}")
        name = "_".join(f"{k.split('.')[-1].lower()}-{v}" for k, v in point.items()) or "run"
        runs.append({"name": re.sub(r"[^\w.=-]+", "", name), "axes": point, "gin": files,
                     "bindings": list(bindings) + extra})
    return runs


def _is_gin_literal(value: str) -> bool:
    if value.startswith(("@", "%")) or value in ("True", "False", "None"):
        return True
    try:
        ast.literal_eval(value)
        return True
    except (ValueError, SyntaxError):
        return False


def finished(out: str) -> dict[str, dict]:
    path = os.path.join(out, RECORDS)
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    return {r["name"]: r for r in records}


def _last_eval(workdir: str) -> dict[str, float]:
    from engine.logging import read_metrics
    if not os.path.exists(os.path.join(workdir, "metrics.jsonl")):
        return {}
    evals = [r for r in read_metrics(workdir) if r["split"] == "eval"]
    return {k: v for k, v in evals[-1].items() if k not in ("split",)} if evals else {}


class Interrupted(Exception):
    """A run stopped before its last step (a signal): the sweep stops, and resumes it next time."""


def _check_finished(workdir: str, staged: bool) -> None:
    """Every stage's last logged training step must be its configured `train.steps`."""
    from engine import checkpoint
    from engine.program import configured_steps
    stages = [d for d in sorted(os.listdir(workdir)) if os.path.isdir(os.path.join(workdir, d))] if staged else [None]
    for stage in stages:
        folder = os.path.join(workdir, stage) if stage else workdir
        path = os.path.join(folder, "metrics.jsonl")
        if stage and not os.path.isfile(path):
            continue  # not a stage folder (checkpoints/, tb/)
        latest = checkpoint.latest(folder)
        step = checkpoint.read_meta(latest)["step"] if latest else 0
        if step < configured_steps(stage):
            raise Interrupted(f"{folder} stopped at step {step} of {configured_steps(stage)}")


def _steps_per_second(workdir: str) -> float | None:
    from engine.logging import read_metrics
    times = [r["step_time_s"] for r in read_metrics(workdir) if r["split"] == "train" and "step_time_s" in r]
    steady = times[1:] or times  # the first window pays for warm-up
    return 1.0 / statistics.median(steady) if steady else None


def _model_and_task(scope: str | None):
    """Build the configured model and task (in a stage's gin scope) to count parameters and FLOPs."""
    import contextlib

    import gin
    import torch

    from engine.task import Task
    with gin.config_scope(scope) if scope else contextlib.nullcontext():
        bound = gin.get_bindings("train")  # resolves @Task() to an instance, leaves @Model a class
        task = bound["task"] if isinstance(bound["task"], Task) else bound["task"]()
        model = bound["model"] if isinstance(bound["model"], torch.nn.Module) else bound["model"]()
    return model, task


def describe(run: dict, workdir: str) -> dict[str, Any]:
    """The record of a finished run, from its configuration and its run directory."""
    import gin
    import torch

    from engine import analysis, config
    from engine.program import configured_steps
    config.import_packages()
    config.reset()
    config.parse(run["gin"], run["bindings"])
    staged = os.path.isdir(os.path.join(workdir, "pretrain"))
    _check_finished(workdir, staged)
    upstream_dir = os.path.join(workdir, "pretrain") if staged else workdir
    scope = "pretrain" if staged else None
    steps, batch_size = configured_steps(scope), gin.query_parameter("train.batch_size")
    model, task = _model_and_task(scope)
    model.eval()
    batch = task.example_batch(1)
    with torch.no_grad():
        flops = analysis.measured_flops(lambda: task.loss(model, batch)) // 2  # counter's FLOPs = 2 per MAC
    parameters = analysis.count_parameters(model)
    embedding = getattr(getattr(model, "embedding", None), "table", None)
    upstream = _last_eval(upstream_dir)
    downstream = {}
    if staged:
        for stage in sorted(os.listdir(workdir)):
            if stage != "pretrain" and os.path.isfile(os.path.join(workdir, stage, "metrics.jsonl")):
                downstream[stage] = _last_eval(os.path.join(workdir, stage)).get("accuracy")
    config.reset()
    return {"name": run["name"], "axes": run["axes"], "gin": [os.path.relpath(f, REPO_ROOT) for f in run["gin"]],
            "bindings": run["bindings"], "workdir": workdir, "parameters": parameters,
            "non_embedding_parameters": parameters - (embedding.weight.numel() if embedding is not None else 0),
            "forward_flops_per_example": flops, "train_flops": 3 * flops * steps * batch_size,
            "steps": steps, "batch_size": batch_size, "steps_per_s": _steps_per_second(upstream_dir),
            "upstream": upstream, "downstream": downstream}


def torchrun_command(run: dict, workdir: str, nproc: int) -> str:
    args = ["torchrun", "--nproc-per-node", str(nproc), "launch/run.py"]
    for path in run["gin"]:
        args += ["--gin", os.path.relpath(path, REPO_ROOT)]
    for binding in run["bindings"]:
        args += ["--bind", binding]
    return shlex.join(args + ["--workdir", workdir])


def append_record(out: str, record: dict) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, RECORDS), "a") as handle:
        handle.write(json.dumps(record) + "\n")


def sweep(gin_files: Sequence[str], axes: Sequence[tuple[str, list[str]]], bindings: Sequence[str], out: str,
          *, torchrun: int = 0, collect: bool = False, log=print) -> list[dict]:
    """Run (or print, or collect) every grid point not yet recorded; return all records in grid order.
    Raises Interrupted when a run was stopped by a signal (its checkpoint resumes it next time)."""
    from launch.experiment import gin_path, run_config
    gin_files = [gin_path(f) for f in gin_files]
    runs = plan(gin_files, axes, bindings)
    done = finished(out)
    for index, run in enumerate(runs, start=1):
        workdir = os.path.join(out, run["name"])
        if run["name"] in done:
            log(f"[{index}/{len(runs)}] {run['name']}: finished, skipped")
            continue
        if torchrun:
            print(torchrun_command(run, workdir, torchrun))
            continue
        if not collect:
            log(f"[{index}/{len(runs)}] {run['name']}: training in {workdir}")
            run_config(run["gin"], run["bindings"], workdir)
        elif not os.path.isfile(os.path.join(workdir, "metrics.jsonl")) and not os.path.isdir(
                os.path.join(workdir, "pretrain")):
            log(f"[{index}/{len(runs)}] {run['name']}: no run directory yet, not collected")
            continue
        try:
            record = describe(run, workdir)
        except Interrupted as stop:
            log(f"[{index}/{len(runs)}] {run['name']}: {stop}; run the same command again to resume")
            raise
        append_record(out, record)
        done[run["name"]] = record
    return [done[r["name"]] for r in runs if r["name"] in done]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gin", action="append", required=True, help="base gin file(s)")
    parser.add_argument("--grid", action="append", default=[], help="NAME=[v1,v2,...] (repeatable)")
    parser.add_argument("--bind", action="append", default=[], help="binding for every run (repeatable)")
    parser.add_argument("--out", help="sweep folder (default runs/sweeps/<gin stem>)")
    parser.add_argument("--torchrun", type=int, default=0, metavar="N",
                        help="print a torchrun command (N processes) per unfinished run instead of running")
    parser.add_argument("--collect", action="store_true", help="record runs trained elsewhere; train nothing")
    args = parser.parse_args(argv)
    from engine.errors import ConfigError
    try:
        axes = [parse_axis(a) for a in args.grid]
    except ValueError as error:
        print(f"sweep: {error}", file=sys.stderr)
        return 2
    out = args.out or os.path.join("runs", "sweeps", os.path.splitext(os.path.basename(args.gin[0]))[0])
    try:
        records = sweep(args.gin, axes, args.bind, out, torchrun=args.torchrun, collect=args.collect)
    except ConfigError as error:
        from engine import config
        print(f"config error: {config.format_error(error)}", file=sys.stderr)
        return 2
    except Interrupted:
        return 1
    if not args.torchrun:
        print(f"{len(records)} record(s) in {os.path.join(out, RECORDS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
