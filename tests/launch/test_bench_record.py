"""Benchmark records: a run writes its figures as JSON with provenance and load, a smoke run never
replaces the committed record, and launch/tables.py renders a record into a page and reports a
page whose number differs from it."""
from __future__ import annotations

import argparse
import json
import os

import pytest

from launch import bench, tables
from launch.benchmarks import _record

TINY_ACT = ["--batch", "4", "--length", "8", "--d-model", "8", "--max-steps", "3", "--batches", "1", "--repeats", "1"]


def test_a_run_writes_its_figures_with_provenance_and_load(tmp_path, capsys):
    assert bench.main(["act", *TINY_ACT, "--out", str(tmp_path)]) == 0
    with open(tmp_path / "act.json") as handle:
        record = json.load(handle)
    assert record["schema"] == _record.SCHEMA and record["benchmark"] == "act"
    assert record["settings"]["batch"] == 4 and "out" not in record["settings"]
    figures = record["figures"]
    assert figures["masked_ms"] > 0 and figures["shrunk_ms"] > 0
    assert abs(figures["wall_saving"] - (1 - figures["shrunk_ms"] / figures["masked_ms"])) < 1e-9
    # The printed ratio is the recorded one.
    assert f"ratio {figures['ratio']:.3f}" in capsys.readouterr().out
    assert [row["how"].split()[0] for row in record["tables"]["batches"]["rows"]] == ["masked", "shrunk"]
    prov = record["provenance"]
    assert prov["command"] == "python launch/bench.py act " + " ".join(TINY_ACT) + f" --out {tmp_path}"
    assert {"commit", "dirty", "versions", "device", "threads", "wall_s"} <= set(prov)
    assert prov["versions"]["torch"] and prov["device"]["type"] == "cpu" and prov["threads"] >= 1
    assert prov["wall_s"] > 0
    load = record["load"]
    assert len(load["start"]) == 3 and len(load["end"]) == 3 and load["cpus"] == os.cpu_count()


def test_only_a_run_at_the_defaults_writes_the_committed_record(tmp_path, monkeypatch):
    """Smoke sizes go where --out says or nowhere; --no-save writes nothing."""
    monkeypatch.setattr(_record, "BENCH_DIR", str(tmp_path / "bench"))

    def record(argv):
        parser = argparse.ArgumentParser(description="demo")
        parser.add_argument("--steps", type=int, default=100)
        return _record.Record("launch.benchmarks.demo", parser, argv)

    assert record([]).path() == str(tmp_path / "bench" / "demo.json")
    assert record(["--steps", "100"]).path() == str(tmp_path / "bench" / "demo.json")
    assert record(["--steps", "2"]).path() is None
    assert record(["--steps", "2", "--out", str(tmp_path / "x")]).path() == str(tmp_path / "x" / "demo.json")
    assert record(["--out", str(tmp_path / "y.json")]).path() == str(tmp_path / "y.json")
    assert record(["--no-save"]).path() is None
    smoke = record(["--steps", "2"])
    assert smoke.save({"rate": 1.0}) is None and not os.path.exists(tmp_path / "bench")


def write_record(root, rate: float) -> None:
    parser = argparse.ArgumentParser(description="A demo benchmark.")
    parser.add_argument("--steps", type=int, default=10)
    run = _record.Record("launch.benchmarks.demo", parser, ["--out", os.path.join(root, "bench")])
    rows = [{"name": "baseline", "rate": 2.0, "ratio": 1.0}, {"name": "ours", "rate": rate, "ratio": rate / 2.0}]
    run.save({"rate": rate, "ratio": rate / 2.0},
             {"rates": _record.table([("arm", "{name}"), ("steps/s", "{rate:.2f}"), ("vs baseline", "{ratio:.2f}x")],
                                     rows)},
             summary="Ours runs at {rate:.2f} steps/s, **{ratio:.3f}x** the baseline.")


PAGE = """# Benchmarks

<!-- results:bench/demo sentence -->
typed by hand
<!-- /results -->

<!-- results:bench/demo bench -->
<!-- /results -->
"""


def test_tables_render_a_record_and_check_catches_a_changed_number(tmp_path):
    root, page = str(tmp_path / "results"), str(tmp_path / "page.md")
    write_record(root, 1.5)
    with open(page, "w") as handle:
        handle.write(PAGE)
    assert tables.main(["--check", page, "--results", root]) == 1
    assert tables.main([page, "--results", root]) == 0
    text = open(page).read()
    assert "typed by hand" not in text
    assert "Ours runs at 1.50 steps/s, **0.750x** the baseline. Measured by `python launch/bench.py demo --out" in text
    assert "| arm | steps/s | vs baseline |\n|---|---|---|\n| baseline | 2.00 | 1.00x |\n| ours | 1.50 | 0.75x |" in text
    assert "load average " in text and " at the end (1 minute, " in text and "thread(s)" in text
    assert tables.main(["--check", page, "--results", root]) == 0
    with open(page, "w") as handle:  # a hand edit of one number
        handle.write(text.replace("| ours | 1.50 |", "| ours | 1.60 |"))
    assert tables.stale([page], root) == [f"{os.path.relpath(page, tables.REPO_ROOT)}: results:bench/demo"]
    with open(page, "w") as handle:
        handle.write(text)
    write_record(root, 1.6)  # a new run: both blocks are stale until regenerated
    assert tables.main(["--check", page, "--results", root]) == 1 and len(tables.stale([page], root)) == 2


def test_a_record_refuses_study_views_and_company(tmp_path):
    root = str(tmp_path)
    write_record(root, 1.5)
    for block, error in (("bench/demo claims", "unknown view"), ("bench/demo,bench/demo table", "shows alone")):
        with pytest.raises(tables.TableError, match=error):
            tables.regenerate(f"<!-- results:{block} -->\n<!-- /results -->", root)


def test_a_block_can_show_one_table_of_a_record(tmp_path):
    root = str(tmp_path)
    write_record(root, 1.5)
    text = tables.regenerate("<!-- results:bench/demo table:rates -->\n<!-- /results -->", root)
    assert "| ours | 1.50 | 0.75x |" in text and "Measured by" not in text
    with pytest.raises(tables.TableError, match="no table 'speeds'"):
        tables.regenerate("<!-- results:bench/demo table:speeds -->\n<!-- /results -->", root)
