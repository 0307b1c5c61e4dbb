"""Freed tensor memory goes back to the OS on a CPU rank of a multi-process strategy (engine/memory.py):
without it glibc keeps freed tensors below its risen mmap threshold resident, which made sharded
strategies' peak memory grow step by step above DDP's."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO, subprocess_env

# Frees 16 x 8 MiB tensors that sit between small live ones (as a step's buffers sit between what
# it keeps), after one 16 MiB tensor was freed (which raises glibc's threshold to 16 MiB).
PATTERN = """
import json, sys, torch
from engine import memory
{setup}
big = torch.ones(4 << 20); del big
blocks, pins = [], []
for _ in range(16):
    blocks.append(torch.ones(2 << 20))
    pins.append(torch.ones(16 << 10))
before = memory.resident_mb()
del blocks
print(json.dumps({{"returned_mb": before - memory.resident_mb(), "applied": {applied}}}))
"""


def freed(setup: str, applied: str = "None", **env: str) -> dict:
    script = PATTERN.format(setup=setup, applied=applied)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=subprocess_env(**env),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


needs_glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")


@needs_glibc
def test_a_cpu_rank_of_a_multi_process_strategy_returns_freed_tensors_to_the_os():
    result = freed("from engine.strategies.ddp import DDP\nstrategy = DDP(); strategy.setup()",
                   applied="memory._applied", GINTRAIN_DEVICE="cpu")
    assert result["applied"] == memory_default()
    assert result["returned_mb"] > 100, result  # 128 MiB freed


@needs_glibc
def test_without_it_glibc_keeps_the_freed_tensors_resident():
    """The cause, shown: a one-process run (and GINTRAIN_MMAP_THRESHOLD=0) keep glibc's behaviour."""
    single = freed("from engine.strategies.single import SingleProcess\nSingleProcess().setup()",
                   GINTRAIN_DEVICE="cpu")
    off = freed("from engine.strategies.ddp import DDP\nDDP().setup()", GINTRAIN_DEVICE="cpu",
                GINTRAIN_MMAP_THRESHOLD="0")
    for result in (single, off):
        assert result["returned_mb"] < 40, result


def test_a_threshold_that_is_not_a_number_of_bytes_is_a_config_error(monkeypatch):
    from engine import memory
    from engine.errors import ConfigError
    monkeypatch.setenv(memory.THRESHOLD_ENV, "lots")
    with pytest.raises(ConfigError, match="GINTRAIN_MMAP_THRESHOLD"):
        memory.mmap_threshold()
    monkeypatch.setenv(memory.THRESHOLD_ENV, "4e6")
    assert memory.mmap_threshold() == 4_000_000


def memory_default() -> int:
    from engine import memory
    return memory.DEFAULT_THRESHOLD
