"""The strategy axis of the composition matrix: every model family and variant (recipes.py) under
every distributed strategy on 2 CPU ranks, 2 steps and a final evaluation at tiny width, in fp32
and in bf16; every ACT model again with ranks that halt after different numbers of recurrent steps
(it must not hang); every multi-stage program under ddp (GIFT also under fsdp).

One torchrun job per strategy runs all of its cells in one process group (tests/composition/job.py)
and is shared by the tests, which read what each rank recorded. A strategy moves the arithmetic,
not its result: every fp32 cell's losses equal the ddp job's. GIFT on 2 ranks equals GIFT on one
rank with the whole batch.
"""
from __future__ import annotations

import json
import math
import os
import subprocess

import pytest

from tests.composition.recipes import STRATEGIES, configuration, expected_error, job_cells
from tests.engine import torchrun
from tests.helpers import REPO, losses, subprocess_env, train_in_process

pytestmark = pytest.mark.distributed

JOB = os.path.join(REPO, "tests", "composition", "job.py")


def run_job(path: str, strategy: str) -> None:
    """All of `strategy`'s cells in one torchrun job; its ranks record their cells in `path`."""
    args = [arg for cell in job_cells(strategy) for arg in ("--cell", cell)]
    command = torchrun.TORCHRUN + ["--standalone", "--nproc-per-node", "2", JOB, "--out", path,
                                   "--strategy", strategy, *args]
    env = subprocess_env(GINTRAIN_DEVICE=os.environ.get("GINTRAIN_DEVICE", "cpu"), PYTHONFAULTHANDLER="1")
    with open(f"{path}.log", "w") as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=1200)
        except subprocess.TimeoutExpired:  # the cells not recorded by then fail, naming the log
            torchrun.kill_session(proc)


def job(shared_dir: str, strategy: str) -> str:
    return torchrun.cached(shared_dir, f"composition-{strategy}", lambda path: run_job(path, strategy))


def recorded(folder: str, cell: str) -> list[dict]:
    """What each rank recorded for `cell` (a rank that died records nothing after its last cell)."""
    out = []
    for rank in (0, 1):
        path = os.path.join(folder, f"rank{rank}.json")
        results = json.load(open(path)) if os.path.exists(path) else {}
        out.append(results.get(cell, {"ok": False, "error": f"rank {rank} recorded nothing for this cell "
                                                            f"(the job died; see {folder}.log)"}))
    return out


CELLS = [(strategy, cell) for strategy in STRATEGIES for cell in job_cells(strategy)]


@pytest.mark.parametrize("strategy, cell", CELLS, ids=[f"{s}-{c}" for s, c in CELLS])
def test_cell(shared_dir, strategy, cell):
    folder = job(shared_dir, strategy)
    ranks = recorded(folder, cell)
    wanted = expected_error(cell, strategy)
    if wanted:
        for result in ranks:
            assert not result["ok"] and result["error"].startswith("ConfigError: "), result
            assert all(word in result["error"] for word in wanted) and "\n" not in result["error"], result
        return
    for rank, result in enumerate(ranks):
        assert result["ok"], f"rank {rank}: {result.get('error')}\n{result.get('trace', '')}"
    if strategy != "ddp" and (cell.endswith(":fp32") or cell.endswith(":fp32:uneven")):
        ours = losses(os.path.join(folder, cell.replace(":", "-")))
        reference = losses(os.path.join(job(shared_dir, "ddp"), cell.replace(":", "-")))
        assert ours.keys() == reference.keys() == {1, 2}
        for step in ours:
            assert math.isclose(ours[step], reference[step], rel_tol=2e-5, abs_tol=1e-6), (step, ours, reference)


def gift_on_one_rank(shared_dir: str) -> str:
    files, bindings = configuration("program/gift", "single")
    return torchrun.cached(shared_dir, "composition-gift-one-rank",
                           lambda path: train_in_process(path, bindings, files=tuple(files)))


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_gift_on_two_ranks_equals_one_rank_with_the_whole_batch(shared_dir, strategy):
    """Every rank pairs its sources among the step's global targets and drops the same least
    confident ones; the partial passes (hidden, resume) run through the wrapper's forward."""
    two = os.path.join(job(shared_dir, strategy), "program", "gift")
    one = gift_on_one_rank(shared_dir)
    for stage in ("source", "round_1", "round_2"):
        ours, reference = losses(os.path.join(two, stage)), losses(os.path.join(one, stage))
        assert ours.keys() == reference.keys() == {1, 2}, stage
        for step in ours:
            assert math.isclose(ours[step], reference[step], rel_tol=2e-5, abs_tol=1e-6), (stage, step, ours, reference)
