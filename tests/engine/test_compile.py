"""train.compile: torch.compile changes how a step runs, not what it computes. Losses match the
eager run to float tolerance in one process and on 2 ranks under DDP and FSDP2 (Inductor on the
CPU: each process compiles the tiny model once, which is why these are marked slow)."""
from __future__ import annotations

import math

import pytest

from tests.engine import torchrun
from tests.engine.torchrun import BINDINGS, reference_run
from tests.helpers import TINY_PVR, losses, train_in_process

pytestmark = pytest.mark.slow


def assert_close_losses(compiled: dict[int, float], eager: dict[int, float]) -> None:
    assert compiled.keys() == eager.keys() and eager
    for step in eager:
        assert math.isclose(compiled[step], eager[step], rel_tol=1e-4, abs_tol=1e-5), (step, compiled[step], eager[step])


def test_compiled_single_process_run_matches_eager(tmp_path):
    bindings = TINY_PVR + ["train.steps = 8"]
    eager = losses(train_in_process(str(tmp_path / "eager"), bindings).workdir)
    compiled = losses(train_in_process(str(tmp_path / "compiled"), bindings + ["train.compile = True"]).workdir)
    assert_close_losses(compiled, eager)


@pytest.mark.distributed
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_compiled_two_rank_run_matches_eager(tmp_path, shared_dir, strategy):
    eager = losses(reference_run(shared_dir, strategy))
    workdir = str(tmp_path / "run")
    torchrun.run(workdir, strategy, bindings=BINDINGS + ["train.compile = True"])
    assert_close_losses(losses(workdir), eager)
