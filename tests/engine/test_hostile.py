"""Hostile conditions around one process: a second run on a held run directory, a damaged or
unsafe newest checkpoint, init_from files that do not fit, a full disk or quota while saving or
logging, a read-only run directory. Each ends in one line with its exit code (2: the run was
pointed at something it cannot use, 3: the storage refused a write), and nothing saved is lost.
(The torchrun versions are in test_hostile_distributed.py.)"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

import programs.distill
from engine import checkpoint, rundir
from engine.callbacks import Callback
from engine.errors import RefusedFile, RunDirectoryBusy, StorageError
from engine.logging import read_metrics
from engine.strategies import base
from launch.run import main as run_main
from tests.helpers import REPO, RUN, TINY_PVR, losses, subprocess_env, tiny_config, train_in_process

PVR = "gin/hyperut/transformer_pvr.gin"
BINDINGS = TINY_PVR + ["train.steps = 20", "train.checkpoint_every = 10", "train.keep_checkpoints = 2"]


def cli_args(workdir: str, bindings: list[str] = BINDINGS) -> list[str]:
    return ["--gin", os.path.join(REPO, PVR)] + [a for b in bindings for a in ("--bind", b)] + ["--workdir", workdir]


def run_here(workdir: str, capsys, bindings: list[str] = BINDINGS) -> tuple[int, str, str]:
    """launch/run.py in this process: (exit code, stdout, stderr)."""
    from engine import config
    config.reset()
    capsys.readouterr()
    code = run_main(cli_args(workdir, bindings))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def snapshot(folder: str) -> dict[str, tuple[str, int]]:
    """Every file under `folder`: its SHA-256 and modification time."""
    found = {}
    for current, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(current, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, folder)] = (hashlib.sha256(handle.read()).hexdigest(),
                                                        os.stat(path).st_mtime_ns)
    return found


def locked(workdir: str) -> bool:
    """Whether some holder has `workdir`'s lock (a fresh descriptor conflicts with this process's own)."""
    path = rundir.lock_path(workdir)
    if not os.path.exists(path):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def steps_of(workdir: str) -> list[int]:
    return [step for step, _ in checkpoint.complete_checkpoints(workdir)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[int, float]:
    """The uninterrupted run's losses."""
    from engine import config
    config.import_packages()  # module fixtures run before the per-test one that registers components
    workdir = str(tmp_path_factory.mktemp("reference") / "run")
    train_in_process(workdir, BINDINGS)
    return losses(workdir)


# --- one writer per run directory -------------------------------------------------------------

HOLDER = """
import fcntl, json, os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-01-02 03:04:05"}).encode())
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_run_on_a_held_directory_exits_2_naming_the_holder_and_changes_nothing(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    train_in_process(workdir, BINDINGS)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, rundir.lock_path(workdir)], stdout=subprocess.PIPE,
                              text=True)  # another live process with the run directory's lock
    try:
        assert holder.stdout.readline() == "held\n"
        before = snapshot(workdir)
        code, out, err = run_here(workdir, capsys)
        assert snapshot(workdir) == before
    finally:
        holder.kill()  # kill -9
        holder.wait()
    assert code == 2 and not out
    assert one_line(err) == (f"run directory in use: {workdir} is held by pid {holder.pid} on host "
                             f"{socket.gethostname()}, started 2026-01-02 03:04:05; wait for that run to end (or "
                             "stop it), or pass another --workdir")
    code, out, err = run_here(workdir, capsys)  # the holder died: no stale lock
    assert code == 0 and "already finished" in out, err


@pytest.mark.slow
def test_two_real_runs_on_one_directory_then_kill_9_leaves_no_stale_lock(tmp_path):
    workdir = str(tmp_path / "run")
    long = BINDINGS + ["train.steps = 100000"]
    first = subprocess.Popen([sys.executable, RUN, *cli_args(workdir, long)], cwd=REPO, env=subprocess_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while checkpoint.latest(workdir) is None:  # training, with a checkpoint behind it
            assert first.poll() is None and time.time() < deadline, "the first run never got going"
            time.sleep(0.01)
        with pytest.raises(RunDirectoryBusy, match=rf"is held by pid {first.pid} on host "):
            train_in_process(workdir, long)
        assert first.poll() is None
    finally:
        first.kill()  # kill -9: the kernel drops its lock
        first.wait()
    assert not locked(workdir)
    logged = [r["step"] for r in read_metrics(workdir) if r["split"] == "train"]
    assert logged == list(range(1, len(logged) + 1))  # one writer: no interleaved or repeated steps
    assert len(os.listdir(os.path.join(workdir, "tb"))) == 1  # the refused run opened no event file
    with rundir.exclusive(workdir):  # a restart takes the lock at once
        assert locked(workdir)


class LockProbe(Callback):
    """At step 1 of each stage, records whether the program's folder and each stage folder are locked."""

    def __init__(self, parent: str, seen: list) -> None:
        self.parent, self.seen = parent, seen

    def on_step_end(self, trainer, step: int) -> None:
        if step == 1:
            self.seen.append((os.path.basename(trainer.workdir), locked(self.parent),
                              {name: locked(os.path.join(self.parent, name)) for name in ("teacher", "student")}))


def test_a_multi_stage_program_locks_its_folder_and_each_stage_without_blocking_itself(tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    seen: list = []
    original = programs.distill.train
    monkeypatch.setattr(programs.distill, "train", lambda **kw: original(**kw, callbacks=[LockProbe(workdir, seen)]))
    result = train_in_process(workdir, tiny_config("tiny_kd_digits") + ["train.steps = 2"],
                              files=("gin/kd/kd_mlp_from_cnn.gin",))
    assert result.finished
    assert seen == [("teacher", True, {"teacher": True, "student": False}),
                    ("student", True, {"teacher": False, "student": True})]
    assert not any(locked(p) for p in (workdir, os.path.join(workdir, "teacher"), os.path.join(workdir, "student")))


def test_forked_children_do_not_keep_the_lock_alive(tmp_path):
    workdir = str(tmp_path / "run")
    with rundir.exclusive(workdir):
        child = os.fork()
        if child == 0:  # a data-loader worker, say, that outlives its parent for a moment
            time.sleep(3)
            os._exit(0)
    try:
        deadline = time.time() + 1.5  # the child closes its copy as soon as it is scheduled
        while locked(workdir):
            assert time.time() < deadline, "a forked child kept the lock of a parent that let go"
            time.sleep(0.01)
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


# --- verified checkpoints ---------------------------------------------------------------------

def test_each_checkpoint_records_size_and_sha256_of_its_files(tmp_path):
    workdir = str(tmp_path / "run")
    train_in_process(workdir, BINDINGS)
    path = checkpoint.latest(workdir)
    files = checkpoint.read_meta(path)["files"]
    assert sorted(files) == ["state.pt", "train_state_rank0.pt"]
    for name, entry in files.items():
        data = open(os.path.join(path, name), "rb").read()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_a_truncated_newest_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(
        tmp_path, capsys, reference):
    workdir = str(tmp_path / "run")
    train_in_process(workdir, BINDINGS)
    newest = os.path.join(checkpoint.root(workdir), "step_000020")
    size = os.path.getsize(os.path.join(newest, "state.pt"))
    os.truncate(os.path.join(newest, "state.pt"), 1000)  # a bad copy, a full quota
    code, out, err = run_here(workdir, capsys)
    assert code == 0, err
    assert (f"checkpoint {newest} cannot be used: state.pt has 1000 bytes, {size} were written; "
            "set aside as damaged-step_000020") in out.splitlines()
    assert (f"resumed from {os.path.join(checkpoint.root(workdir), 'step_000010')} (step 10), "
            "the newest intact checkpoint") in out.splitlines()
    assert losses(workdir) == reference  # steps 11-20 trained again, exactly
    assert steps_of(workdir) == [10, 20] and checkpoint.latest(workdir) == newest  # retention, `latest`
    assert os.path.getsize(os.path.join(checkpoint.root(workdir), "damaged-step_000020", "state.pt")) == 1000


def test_no_intact_checkpoint_is_one_clear_error_and_nothing_is_touched(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    train_in_process(workdir, BINDINGS)
    for step in (10, 20):
        with open(os.path.join(checkpoint.root(workdir), checkpoint.step_dir_name(step), "state.pt"), "r+b") as handle:
            handle.seek(100)
            handle.write(b"\xff" * 8)  # same size, other bytes: only the checksum tells
    before = snapshot(workdir)
    code, out, err = run_here(workdir, capsys)
    assert code == 2
    assert one_line(err) == (
        f"refused file: no checkpoint in {checkpoint.root(workdir)} can be used: step_000020: state.pt does not match "
        "the SHA-256 recorded when it was written (nor can the 1 older one); restore one from a copy, or move "
        f"{checkpoint.root(workdir)} away to start from scratch")
    assert {k: v for k, v in snapshot(workdir).items() if k != "run.lock"} == \
        {k: v for k, v in before.items() if k != "run.lock"}


class Evil:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant_unsafe_pickle(path: str, marker: str, *, fix_manifest: bool) -> None:
    """Replace a checkpoint file with a pickle that would run `touch marker` when unpickled;
    `fix_manifest` also records its checksum, as a deliberate attacker would."""
    torch.save({"model": Evil(marker)}, path)
    if fix_manifest:
        meta_path = os.path.join(os.path.dirname(path), checkpoint.META)
        meta = json.load(open(meta_path))
        data = open(path, "rb").read()
        meta["files"][os.path.basename(path)] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        json.dump(meta, open(meta_path, "w"))


def test_a_checkpoint_pickle_that_would_run_code_is_refused_in_one_line_and_nothing_runs(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    marker = str(tmp_path / "ran")
    train_in_process(workdir, BINDINGS)
    for step in (10, 20):
        folder = os.path.join(checkpoint.root(workdir), checkpoint.step_dir_name(step))
        plant_unsafe_pickle(os.path.join(folder, "state.pt"), marker, fix_manifest=step == 20)
    code, out, err = run_here(workdir, capsys)
    assert code == 2
    assert one_line(err).startswith(
        f"refused file: no checkpoint in {checkpoint.root(workdir)} can be used: step_000020: state.pt holds a "
        "pickle that would call posix.system, which a checkpoint never holds; nothing was loaded from it")
    # Export and init_from refuse it too; a plain torch file goes through torch's own refusal.
    assert run_cli_export(workdir, tmp_path) == 2
    with pytest.raises(RefusedFile, match=r"state\.pt holds a pickle that would call posix\.system: not loaded"):
        base.load_file(os.path.join(checkpoint.root(workdir), "step_000010", "state.pt"))
    assert not os.path.exists(marker)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_the_pickle_scan_reads_every_protocol_without_running_anything(protocol, tmp_path):
    import pathlib
    import pickle
    marker = str(tmp_path / "ran")
    data = pickle.dumps({"a": Evil(marker), "b": pathlib.PurePosixPath("x"), "c": ("os", "system")}, protocol=protocol)
    assert {"posix.system", "pathlib.PurePosixPath"} <= checkpoint.pickle_globals(data)
    assert "os.system" not in checkpoint.pickle_globals(data)  # two strings in a tuple are no global
    assert checkpoint.pickle_globals(b"\x80\x02\x82\x01.") == {checkpoint.COMPUTED}  # EXT1: a global by number
    assert not os.path.exists(marker)


def run_cli_export(source: str, tmp_path) -> int:
    from launch.export import main as export_main
    return export_main([source, "--out", str(tmp_path / "model.safetensors")])


def test_a_legacy_checkpoint_without_a_manifest_is_still_read_whole_or_skipped(tmp_path, capsys, reference):
    workdir = str(tmp_path / "run")
    train_in_process(workdir, BINDINGS)
    for step in (10, 20):
        meta_path = os.path.join(checkpoint.root(workdir), checkpoint.step_dir_name(step), checkpoint.META)
        meta = json.load(open(meta_path))
        del meta["files"]  # as written before checkpoints were verified
        json.dump(meta, open(meta_path, "w"))
    os.truncate(os.path.join(checkpoint.root(workdir), "step_000020", "state.pt"), 5000)
    code, out, err = run_here(workdir, capsys)
    assert code == 0, err
    assert "state.pt cannot be read: not a readable zip archive" in out
    assert losses(workdir) == reference


# --- init_from ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> str:
    from engine import config
    config.import_packages()
    folder = tmp_path_factory.mktemp("exported")
    train_in_process(str(folder / "run"), TINY_PVR + ["train.steps = 1"])
    out = str(folder / "model.safetensors")
    checkpoint.export_safetensors(checkpoint.latest(str(folder / "run")), out)
    return out


def test_init_from_a_file_that_is_not_safetensors_is_refused_in_one_line(tmp_path, capsys):
    pickled = str(tmp_path / "weights.pt")
    torch.save({"embed.weight": torch.zeros(2)}, pickled)
    code, _, err = run_here(str(tmp_path / "run"), capsys, TINY_PVR + [f"train.init_from = '{pickled}'"])
    assert code == 2
    assert one_line(err) == (f"refused file: train.init_from = '{pickled}' is not a safetensors file (Error while "
                             "deserializing header: header too large); give a .safetensors export (python "
                             "launch/export.py RUN --out model.safetensors) or a checkpoint folder")


def test_init_from_names_the_first_tensor_that_does_not_fit_and_both_shapes(tmp_path, capsys, exported):
    from safetensors.torch import load_file, save_file
    tensors = load_file(exported)
    tensors["blocks.0.attention.query.weight"] = torch.zeros(17, 16)
    tensors["blocks.0.attention.out.weight"] = torch.zeros(3, 3)
    wrong = str(tmp_path / "wrong.safetensors")
    save_file(tensors, wrong)
    code, _, err = run_here(str(tmp_path / "run"), capsys, TINY_PVR + [f"train.init_from = '{wrong}'"])
    assert code == 2
    assert one_line(err) == (f"refused file: train.init_from = '{wrong}' does not match the model: tensor "
                             "'blocks.0.attention.query.weight' has shape [17, 16] in the file and [16, 16] in the model")
    del tensors["blocks.0.attention.query.weight"], tensors["blocks.0.attention.out.weight"]
    save_file(tensors, wrong)
    code, _, err = run_here(str(tmp_path / "run"), capsys, TINY_PVR + [f"train.init_from = '{wrong}'"])
    assert code == 2 and "the model's tensor 'blocks.0.attention.query.weight' is not in the file (2 missing" in one_line(err)


# --- a full disk, a quota, no permission --------------------------------------------------------

def fail_second_checkpoint(monkeypatch, code: int) -> None:
    """The storage refuses the second checkpoint's state.pt halfway through, with errno `code`."""
    original, calls = base.save_file, []

    def save_file(value, path):
        if os.path.basename(path) == "state.pt":
            calls.append(path)
            if len(calls) == 2:
                with open(path, "wb") as handle:
                    handle.write(b"PK\x03\x04 half a file")
                raise OSError(code, os.strerror(code))
        original(value, path)

    monkeypatch.setattr(base, "save_file", save_file)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EACCES])
def test_a_refused_checkpoint_write_exits_3_in_one_line_and_keeps_the_previous_checkpoint(
        tmp_path, capsys, monkeypatch, code, reference):
    workdir = str(tmp_path / "run")
    fail_second_checkpoint(monkeypatch, code)
    exit_code, _, err = run_here(workdir, capsys)
    assert exit_code == StorageError.exit_code == 3
    assert one_line(err) == (
        f"storage error: could not write checkpoint step_000020 in {checkpoint.root(workdir)}: {os.strerror(code)}; "
        "the previous checkpoint (step_000010) and `latest` are untouched, the temporary folder was removed; "
        "free space (or fix the permissions) and run the same command to resume")
    assert steps_of(workdir) == [10] and checkpoint.latest(workdir).endswith("step_000010")
    assert sorted(os.listdir(checkpoint.root(workdir))) == ["latest", "step_000010"]  # no .tmp-step_000020
    assert checkpoint.check(checkpoint.latest(workdir)) is None
    monkeypatch.undo()
    train_in_process(workdir, BINDINGS)  # space again: the same command resumes
    assert losses(workdir) == reference


def test_a_refused_log_write_exits_3_in_one_line(tmp_path, capsys, monkeypatch):
    import engine.logging
    workdir = str(tmp_path / "run")
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    real_open = open

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, text):
            if '"step": 15' in text:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.handle.write(text)

    def fake_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return Full(handle) if path == metrics_path and mode == "a" else handle

    monkeypatch.setattr(engine.logging, "open", fake_open, raising=False)
    code, _, err = run_here(workdir, capsys)
    assert code == 3
    assert one_line(err) == (f"storage error: No space left on device writing {workdir}; the checkpoints saved so "
                             "far are intact: free space (or fix the permissions) and run the same command to resume")
    assert steps_of(workdir) == [10]


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 4 MB tmpfs: a real disk that fills up. Skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield str(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: str, leave: int) -> str:
    """Fill the filesystem of `folder` up to `leave` free bytes; return the filler's path."""
    filler = os.path.join(folder, "filler")
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, shutil.disk_usage(folder).free - leave))
    return filler


def test_enospc_on_a_real_small_tmpfs(small_tmpfs, tmp_path, capsys, monkeypatch, reference):
    from engine.trainer import Trainer
    workdir = os.path.join(small_tmpfs, "run")
    original, fillers = Trainer.save, []

    def save_then_fill(self):
        path = original(self)
        if not fillers:  # after the first checkpoint: room for 10 steps of logs, not for a 70 kB state.pt
            fillers.append(fill(small_tmpfs, 40_000))
        return path

    monkeypatch.setattr(Trainer, "save", save_then_fill)
    code, _, err = run_here(workdir, capsys)
    assert code == 3
    assert one_line(err).startswith(f"storage error: could not write checkpoint step_000020 in "
                                    f"{checkpoint.root(workdir)}: No space left on device; the previous checkpoint "
                                    "(step_000010) and `latest` are untouched, the temporary folder was removed")
    assert steps_of(workdir) == [10] and checkpoint.latest(workdir).endswith("step_000010")
    assert sorted(os.listdir(checkpoint.root(workdir))) == ["latest", "step_000010"]
    assert checkpoint.check(checkpoint.latest(workdir)) is None
    # torch.save to a path (what DeepSpeed does) loses the errno; the empty disk still tells.
    lost = os.path.join(small_tmpfs, "lost.pt")
    with pytest.raises(RuntimeError) as caught:
        torch.save({"w": torch.zeros(100_000)}, lost)
    assert checkpoint._describe_failure(caught.value, lost) == (True, "No space left on device")
    os.remove(fillers[0])
    os.remove(lost)
    monkeypatch.undo()
    train_in_process(workdir, BINDINGS)  # space again: the same command resumes
    assert losses(workdir) == reference


def test_a_read_only_run_directory_exits_3_before_anything_is_written(tmp_path, capsys, monkeypatch):
    workdir = str(tmp_path / "run")
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if os.path.basename(str(path)) == rundir.LOCK_FILE and flags & (os.O_RDWR | os.O_WRONLY):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    code, _, err = run_here(workdir, capsys)
    assert code == 3
    assert one_line(err) == (f"storage error: the run directory {workdir} is not writable (Read-only file system); "
                             "make it writable or pass another --workdir")


def test_a_read_only_mount_exits_3(tmp_path, capsys):
    """The real thing: a read-only bind mount (chmod does not stop root, a read-only mount does)."""
    source, view = tmp_path / "source", tmp_path / "view"
    source.mkdir()
    view.mkdir()
    for command in (["mount", "--bind", str(source), str(view)], ["mount", "-o", "remount,ro,bind", str(view)]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["umount", str(view)], capture_output=True)
            pytest.skip(f"cannot make a read-only bind mount here: {done.stderr.strip()}")
    try:
        code, _, err = run_here(str(view), capsys)
        assert code == 3
        assert one_line(err) == (f"storage error: the run directory {view} is not writable (Read-only file "
                                 "system); make it writable or pass another --workdir")
    finally:
        subprocess.run(["umount", str(view)], check=False)
