"""Fixtures only (helpers live in tests/helpers.py): one thread per worker and a clean gin config per test."""
from __future__ import annotations

import os

import pytest
import torch

# Parallel workers on two cores: one thread each, the same as the ranks and subprocesses the
# tests start, so in-process and subprocess runs compute bit-identical losses.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def clean_gin():
    """Every test starts and ends with no gin bindings (gin is process-global)."""
    from engine import config
    config.import_packages()
    config.reset()
    yield
    config.reset()


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory) -> str:
    """A folder all xdist workers of this session share (each worker's basetemp is inside it), where
    torchrun tests cache the jobs several of them compare against."""
    base = tmp_path_factory.getbasetemp()
    return str(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)
