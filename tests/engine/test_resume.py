"""Exact resume: a run stopped (SIGTERM), killed (SIGKILL) or crashed mid-save and restarted
reproduces the uninterrupted run's losses bit for bit on the CPU."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from engine import checkpoint
from tests.helpers import REPO, RUN, TINY_PVR, losses, run_cli, subprocess_env, train_in_process

STEPS = 400
ARGS = ["--gin", "gin/hyperut/transformer_pvr.gin"] + [a for b in TINY_PVR for a in ("--bind", b)] + [
    "--bind", f"train.steps = {STEPS}", "--bind", "train.checkpoint_every = 50",
    "--bind", "train.keep_checkpoints = 2", "--bind", "TransformerClassifier.dropout = 0.1"]


def reference(tmp_path) -> dict[int, float]:
    workdir = str(tmp_path / "reference")
    bindings = TINY_PVR + [f"train.steps = {STEPS}", "train.checkpoint_every = 50",
                           "train.keep_checkpoints = 2", "TransformerClassifier.dropout = 0.1"]
    train_in_process(workdir, bindings)
    return losses(workdir)


def start(workdir: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, RUN, *ARGS, "--workdir", workdir], cwd=REPO, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"run ended early: {proc.communicate()}"
        assert time.time() < deadline, "timed out"
        time.sleep(0.005)


def logged_steps(workdir: str) -> int:
    """Training steps logged so far (metrics.jsonl also holds other records, such as memory's)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path) as handle:
        return sum(1 for line in handle if '"split": "train"' in line)


@pytest.mark.slow
def test_sigterm_saves_exits_zero_and_resume_matches_uninterrupted_run(tmp_path):
    expected = reference(tmp_path)
    workdir = str(tmp_path / "run")
    proc = start(workdir)
    wait_for(lambda: logged_steps(workdir) >= 60, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    stopped_at = checkpoint.read_meta(checkpoint.latest(workdir))["step"]
    assert 60 <= stopped_at < STEPS, "the run must stop early, at the step it was working on"
    assert "received SIGTERM" in out + err
    result = run_cli(ARGS + ["--workdir", workdir])
    assert result.returncode == 0, result.stderr
    assert f"resumed from" in result.stdout + result.stderr
    assert losses(workdir) == expected  # every step, bit for bit


@pytest.mark.slow
def test_sigkill_after_checkpoint_then_restart_matches_uninterrupted_run(tmp_path):
    expected = reference(tmp_path)
    workdir = str(tmp_path / "run")
    proc = start(workdir)
    wait_for(lambda: checkpoint.latest(workdir) is not None and logged_steps(workdir) > 110, proc)
    proc.kill()
    proc.communicate()
    killed_after = checkpoint.read_meta(checkpoint.latest(workdir))["step"]
    assert killed_after < STEPS
    result = run_cli(ARGS + ["--workdir", workdir])
    assert result.returncode == 0, result.stderr
    resumed = losses(workdir)
    assert resumed == expected
    assert sorted(step for step, _ in checkpoint.complete_checkpoints(workdir)) == [350, 400]  # retention


CRASHING_SAVE = textwrap.dedent("""
    import os, signal, sys
    import torch
    from engine import config, program
    from engine.strategies import single

    original = single.SingleProcess.save
    calls = []

    def save_then_die(self, directory, train_state):
        calls.append(directory)
        if len(calls) == 2:  # the second checkpoint: write half a file, then die
            with open(os.path.join(directory, "state.pt"), "wb") as handle:
                handle.write(b"\\x80\\x02partial")
                handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, directory, train_state)

    single.SingleProcess.save = save_then_die
    config.import_packages()
    config.parse([sys.argv[1]], sys.argv[3:])
    program.main(sys.argv[2])
""")


def test_crash_mid_save_leaves_previous_checkpoint_loadable(tmp_path):
    workdir = str(tmp_path / "run")
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_SAVE)
    bindings = TINY_PVR + ["train.steps = 40", "train.checkpoint_every = 10"]
    proc = subprocess.run([sys.executable, str(script), os.path.join(REPO, "gin/hyperut/transformer_pvr.gin"), workdir,
                           *bindings], cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert os.path.isdir(os.path.join(workdir, "checkpoints", ".tmp-step_000020"))  # the half-written one
    assert checkpoint.latest(workdir).endswith("step_000010")
    # A restart resumes from step 10 and finishes; the stale temporary folder is cleaned up.
    train_in_process(workdir, bindings)
    reference_dir = str(tmp_path / "reference")
    train_in_process(reference_dir, bindings)
    assert losses(workdir) == losses(reference_dir)
    assert not os.path.exists(os.path.join(workdir, "checkpoints", ".tmp-step_000020"))


def test_same_seed_twice_gives_identical_losses(tmp_path):
    bindings = TINY_PVR + ["train.steps = 25", "TransformerClassifier.dropout = 0.1"]
    train_in_process(str(tmp_path / "a"), bindings)
    train_in_process(str(tmp_path / "b"), bindings)
    train_in_process(str(tmp_path / "c"), bindings + ["train.seed = 1"])
    assert losses(str(tmp_path / "a")) == losses(str(tmp_path / "b"))
    assert losses(str(tmp_path / "a")) != losses(str(tmp_path / "c"))


def test_accumulation_matches_one_big_batch(tmp_path):
    bindings = TINY_PVR + ["train.steps = 15"]
    train_in_process(str(tmp_path / "whole"), bindings)
    train_in_process(str(tmp_path / "micro"), bindings + ["train.micro_batch_size = 2"])
    whole, micro = losses(str(tmp_path / "whole")), losses(str(tmp_path / "micro"))
    assert whole.keys() == micro.keys()
    for step in whole:
        assert abs(whole[step] - micro[step]) < 1e-5


def test_finished_run_restarted_does_not_train_again(tmp_path):
    workdir = str(tmp_path / "run")
    bindings = TINY_PVR + ["train.steps = 12"]
    train_in_process(workdir, bindings)
    before = open(os.path.join(workdir, "metrics.jsonl")).read()
    result = train_in_process(workdir, bindings)
    assert result.step == 12
    assert open(os.path.join(workdir, "metrics.jsonl")).read() == before
    records = [json.loads(line) for line in before.splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == list(range(1, 13))
