"""The attention benchmark: its memory probe sees real allocations, and a tiny run prints both tables."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

from launch.benchmarks import attention
from tests.helpers import REPO, subprocess_env


def test_peak_memory_sees_a_temporary_allocation():
    with attention.PeakMemory() as peak:
        block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MiB, touched, then freed
        del block
    assert 56 < peak.mib < 96


def test_tiny_run_prints_paper_layout_against_both_baselines(tmp_path):
    """Run as a user would, in its own process (the benchmark pins glibc's mmap threshold)."""
    out = tmp_path / "table.md"
    result = subprocess.run([sys.executable, os.path.join(REPO, "launch", "bench.py"), "attention", "--lengths", "16",
                             "--steps", "1", "--variants", "naive,sdpa,performer", "--markdown", str(out)],
                            cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Ratios to the naive softmax baseline" in result.stdout and "Ratios to PyTorch SDPA" in result.stdout
    rows = [line for line in out.read_text().splitlines() if line.startswith("| Transformer (naive)")]
    assert len(rows) == 2 and "(1.0x)" in rows[0] and "(1.00x)" in rows[0]  # the baseline's own ratio
    assert any(line.startswith("| Performer (FAVOR+)") for line in result.stdout.splitlines())


def test_goal_figures_read_the_longest_length_against_the_papers_goals():
    def row(name, speed, memory):
        return {"model": attention.NAMES[name], "speed_ratio_1024": 1.0, "mib_ratio_1024": 1.0,
                "speed_ratio_4096": speed, "mib_ratio_4096": memory}
    table = {"rows": [row("naive", 1.0, 1.0), row("sdpa", 2.0, 0.21), row("local", 6.0, 0.19),
                      row("linear", 5.2, 0.2), row("sinkhorn", 3.0, 0.3)]}
    figures, summary = attention.goal_figures(table)
    assert figures["length"] == "4K" and (figures["fast_speed_low"], figures["fast_speed_high"]) == (5.2, 6.0)
    assert figures["speed_goal"] == "met" and figures["memory_goal"] == "met"
    assert figures["sinkhorn_goal"] == "not met"
    assert "5.2-6.0x as fast" in summary.format(**figures)
    table["rows"][2] = row("local", 4.9, 0.25)
    figures, _ = attention.goal_figures(table)
    assert figures["speed_goal"] == "not met" and figures["memory_goal"] == "not met"
