"""The record every benchmark run leaves: its figures as JSON, so README and docs render them
(launch/tables.py) instead of quoting them by hand, with the run's provenance and the machine's
load average at start and end, since a timing means little without knowing how busy the machine was.

    record = Record(__name__, parser, argv)   # adds --out / --no-save, parses, notes the load
    args = record.args
    ...
    record.save(figures={...}, tables={...}, summary="... {figure:.2f} ...")

A run at the benchmark's default options writes results/bench/NAME.json, the file the pages
render; a run at any other options (a smoke test, a tiny size) writes only where `--out` says, so
it never replaces the committed record by accident. `--no-save` writes nothing.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from typing import Any, Mapping

from engine.config import REPO_ROOT
from engine.files import write_atomically

BENCH_DIR = os.path.join(REPO_ROOT, "results", "bench")
#: The JSON layout's version; launch/tables.py reads files with this `schema`.
SCHEMA = "gintrain.bench/1"
_OWN_OPTIONS = ("out", "no_save")


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages (empty where the platform has none)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return []


def table(columns: list[tuple[str, str]], rows: list[Mapping[str, Any]], title: str = "") -> dict[str, Any]:
    """A table for the record: `columns` are (header, template) pairs, each template formatted with
    a row's values (`"{steps_per_s:.1f}"`), so the rows keep full-precision numbers."""
    return {"title": title, "columns": [list(column) for column in columns], "rows": [dict(row) for row in rows]}


class Record:
    """One benchmark run: parses its options (with --out / --no-save added), notes the clock and the
    load average when it starts, and writes the record when `save` is called at the end."""

    def __init__(self, module: str, parser: argparse.ArgumentParser, argv: list[str] | None) -> None:
        self.name = module.rsplit(".", 1)[-1]
        self.argv = list(sys.argv[1:] if argv is None else argv)
        parser.add_argument("--out", help=f"write the JSON record here (a .json file or a folder); default "
                                          f"results/bench/{self.name}.json, and only for a run at the default options")
        parser.add_argument("--no-save", action="store_true", help="print the figures only, write no record")
        self.args = parser.parse_args(self.argv)
        defaults = vars(parser.parse_args([]))
        self.settings = {k: v for k, v in vars(self.args).items() if k not in _OWN_OPTIONS}
        self.at_defaults = all(defaults[k] == v for k, v in self.settings.items())
        self.description = (parser.description or "").strip()
        self.load_start = load_average()
        self.clock = time.perf_counter()

    def path(self) -> str | None:
        """Where the record goes: --out, else results/bench/NAME.json at the default options, else nowhere."""
        if self.args.no_save:
            return None
        if self.args.out:
            out = self.args.out
            return out if out.endswith(".json") else os.path.join(out, f"{self.name}.json")
        return os.path.join(BENCH_DIR, f"{self.name}.json") if self.at_defaults else None

    def provenance(self) -> dict[str, Any]:
        """Command, code, software, machine and wall time (launch/provenance.py's fields for a run)."""
        import torch

        from launch import provenance
        where = provenance.device()
        return {"command": shlex.join(["python", "launch/bench.py", self.name, *self.argv]),
                **provenance.git_state(), "versions": provenance.versions(where["type"] == "cuda"),
                "device": where, "threads": torch.get_num_threads(),
                "wall_s": round(time.perf_counter() - self.clock, 2), "platform": sys.platform}

    def save(self, figures: Mapping[str, Any], tables: Mapping[str, Mapping[str, Any]] | None = None,
             summary: str = "") -> str | None:
        """Write the record (see the module docstring for where); returns its path, or None.

        `figures` are named values (identifiers as keys; numbers, or short text), `tables` come from
        `table()`, and `summary` is a sentence formatted with the figures (the `sentence` view of
        launch/tables.py).
        """
        summary.format(**figures)  # a template naming a missing figure fails here, not in a page
        record = {"schema": SCHEMA, "benchmark": self.name, "description": self.description,
                  "settings": self.settings, "figures": dict(figures), "tables": dict(tables or {}),
                  "summary": summary, "provenance": self.provenance(),
                  "load": {"start": self.load_start, "end": load_average(), "cpus": os.cpu_count()},
                  "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        path = self.path()
        if path is None:
            why = "--no-save" if self.args.no_save else \
                f"options differ from the defaults; pass --out to keep it (results/bench/{self.name}.json is unchanged)"
            print(f"record not written: {why}", file=sys.stderr)
            return None
        write_atomically(path, json.dumps(record, indent=1) + "\n")
        shown = os.path.relpath(path, REPO_ROOT) if path.startswith(REPO_ROOT + os.sep) else path
        print(f"record: {shown}", file=sys.stderr)
        return path
