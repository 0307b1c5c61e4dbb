"""Hostile conditions under torchrun (2 ranks on CPU/gloo): a second job on a run directory a
live job holds ends on every rank with one line; a truncated newest checkpoint of a sharded
strategy (FSDP's DCP folder, ZeRO-3's partitions), damaged in a file that only rank 1 checks,
makes both ranks fall back to the previous checkpoint and the run continues exactly; DeepSpeed's
files, which DeepSpeed itself unpickles without restriction, are checked for pickles that would
run code. (The single-process cases are in test_hostile.py.)"""
from __future__ import annotations

import json
import os
import re
import shutil

import psutil
import pytest
import torch

from engine import checkpoint
from engine.logging import read_metrics
from tests.engine import torchrun
from tests.engine.torchrun import BINDINGS, reference_run
from tests.helpers import losses

pytestmark = pytest.mark.distributed


def rank_zero(proc) -> psutil.Process | None:
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == "0" and "run.py" in " ".join(child.cmdline()):
                return child
        except psutil.Error:
            continue
    return None


def test_a_second_torchrun_job_on_a_held_directory_ends_on_every_rank_with_one_line(tmp_path):
    workdir = str(tmp_path / "run")
    long = BINDINGS + ["train.steps = 100000"]
    first = torchrun.start(workdir, "ddp", bindings=long)
    try:
        torchrun.wait_until(lambda: checkpoint.latest(workdir) is not None and rank_zero(first) is not None, first)
        holder = rank_zero(first).pid
        second = torchrun.start(workdir, "ddp", bindings=long, log_name="second.log")
        second.wait(timeout=300)
        assert first.poll() is None, "the first job must still be training"
    finally:
        torchrun.kill_session(first)
    with open(f"{workdir}.second.log") as handle:
        log = handle.read()
    assert second.returncode != 0  # torchrun's own code (1) after its ranks exited with 2
    ours = [line for line in log.splitlines() if line.startswith("run directory in use:")]
    assert len(ours) == 1, log  # rank 0 says it; rank 1 was told and exits quietly
    assert ours[0].startswith(f"run directory in use: {workdir} is held by pid {holder} on host ")
    assert re.findall(r"^\s*exitcode\s*: (-?\d+) \(pid", log, re.MULTILINE) == ["2", "2"], log  # both ranks
    assert "[rank0]" not in log and "[rank1]" not in log, log  # no Python traceback from a rank
    logged = [r["step"] for r in read_metrics(workdir) if r["split"] == "train"]
    assert logged == list(range(1, len(logged) + 1))  # the second job wrote nothing
    assert len(os.listdir(os.path.join(workdir, "tb"))) == 1


def rank_one_file(folder: str) -> str:
    """A file of the checkpoint that rank 1 checks (the ranks check alternate files of the manifest)."""
    names = sorted(checkpoint.read_meta(folder)["files"])
    return names[1::2][0]


@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed_zero3"])
def test_a_truncated_newest_sharded_checkpoint_makes_both_ranks_resume_from_the_one_before(
        tmp_path, shared_dir, strategy):
    reference = reference_run(shared_dir, strategy)
    workdir = str(tmp_path / "run")
    shutil.copytree(reference, workdir)
    newest = checkpoint.latest(workdir)
    assert newest.endswith("step_000060")
    damaged = rank_one_file(newest)
    full = os.path.getsize(os.path.join(newest, damaged))
    os.truncate(os.path.join(newest, damaged), full // 2)
    torchrun.run(workdir, strategy, log_name="restart.log")
    with open(f"{workdir}.restart.log") as handle:
        log = handle.read().splitlines()
    assert (f"checkpoint {newest} cannot be used: {damaged} has {full // 2} bytes, {full} were written; "
            "set aside as damaged-step_000060") in log
    previous = os.path.join(checkpoint.root(workdir), "step_000050")
    assert f"resumed from {previous} (step 50), the newest intact checkpoint" in log
    assert losses(workdir) == losses(reference)  # steps 51-60 trained again, exactly
    assert [s for s, _ in checkpoint.complete_checkpoints(workdir)] == [50, 60]
    assert checkpoint.check(checkpoint.latest(workdir)) is None


class Evil:
    def __reduce__(self):
        return (os.system, ("echo this never runs",))


def test_zero3_checkpoints_pass_the_pickle_check_and_a_planted_pickle_is_refused(tmp_path, shared_dir):
    """DeepSpeed loads its files with weights_only=False; the check before it must let its own
    types through and refuse anything that would run code, even with a matching checksum."""
    folder = str(tmp_path / "step")
    shutil.copytree(checkpoint.latest(reference_run(shared_dir, "deepspeed_zero3")), folder)
    assert checkpoint.problems(folder) == []
    target = os.path.join(folder, "deepspeed", "zero_pp_rank_1_mp_rank_00_optim_states.pt")
    state = torch.load(target, map_location="cpu", weights_only=False)
    state["evil"] = Evil()
    torch.save(state, target)
    meta_path = os.path.join(folder, checkpoint.META)
    meta = json.load(open(meta_path))
    meta["files"]["deepspeed/zero_pp_rank_1_mp_rank_00_optim_states.pt"] = checkpoint._digest(target)
    json.dump(meta, open(meta_path, "w"))
    assert checkpoint.problems(folder) == [
        "deepspeed/zero_pp_rank_1_mp_rank_00_optim_states.pt holds a pickle that would call posix.system, which a "
        "checkpoint never holds; nothing was loaded from it"]
