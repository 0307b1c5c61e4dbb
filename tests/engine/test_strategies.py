"""Every distributed strategy on 2 real torchrun ranks over CPU/gloo: exact resume after kill -9,
equivalence with one rank (gradient accumulation included), real sharding, portable export
(also through DeepSpeed's own zero_to_fp32.py), the plain model name in HParams, two "nodes" on
loopback, and recovery under torchrun --max-restarts."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import psutil
import pytest
import torch
from safetensors.torch import load_file

from engine import checkpoint
from engine.logging import read_metrics
from launch.export import main as export_main
from tests.helpers import TINY_PVR, losses, subprocess_env, train_in_process
from tests.engine import torchrun
from tests.engine.torchrun import BINDINGS, reference_run, CHECKPOINT_EVERY, STEPS

pytestmark = pytest.mark.distributed

RESUMABLE = ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3", "fairscale"]


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    """The in-process references run where the torchrun ranks do: on the CPU, also on a GPU machine."""
    monkeypatch.setenv("GINTRAIN_DEVICE", "cpu")


def one_rank_run(shared_dir: str) -> str:
    """The same training on one process with the whole batch and no accumulation."""
    single = [b for b in BINDINGS if not b.startswith("train.micro_batch_size")]
    return torchrun.cached(shared_dir, "one-rank", lambda path: train_in_process(path, single))


@pytest.mark.parametrize("strategy", RESUMABLE)
def test_kill_after_checkpoint_then_restart_matches_uninterrupted_run(tmp_path, shared_dir, strategy):
    expected = losses(reference_run(shared_dir, strategy))
    workdir = str(tmp_path / "run")
    proc = torchrun.start(workdir, strategy)
    torchrun.wait_until(lambda: checkpoint.latest(workdir) is not None, proc)
    torchrun.kill_session(proc)  # SIGKILL the launcher and both ranks
    resumed_from = checkpoint.read_meta(checkpoint.latest(workdir))["step"]
    assert resumed_from < STEPS
    torchrun.run(workdir, strategy, log_name="restart.log")
    assert losses(workdir) == expected


def assert_same_losses(two: dict[int, float], one: dict[int, float]) -> None:
    """Every step's loss of the 2-rank run equals the one-rank run's to float-reduction tolerance."""
    assert two.keys() == one.keys() == set(range(1, STEPS + 1))
    for step in one:
        assert math.isclose(two[step], one[step], rel_tol=2e-5, abs_tol=1e-6), (step, two[step], one[step])


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3", "fairscale"])
def test_two_ranks_with_accumulation_match_one_rank_with_the_whole_batch(shared_dir, strategy):
    two = losses(reference_run(shared_dir, strategy))
    one = losses(one_rank_run(shared_dir))
    assert_same_losses(two, one)


# Buckets of 1,024 elements split the tiny model into many ZeRO groups (stages 1-2) and sub-groups
# (stage 3), each stepped on its own with its fp32 master weights shared with the weights.
SMALL_BUCKETS = ["DeepSpeed.bucket_size = 1024"]


def small_bucket_run(shared_dir: str, strategy: str) -> str:
    return torchrun.cached(shared_dir, f"small-buckets-{strategy}",
                           lambda path: torchrun.run(path, strategy, bindings=BINDINGS + SMALL_BUCKETS))


@pytest.mark.parametrize("strategy", ["deepspeed_zero2", "deepspeed_zero3"])
def test_zero_with_many_small_groups_still_matches_one_rank(shared_dir, strategy):
    two = losses(small_bucket_run(shared_dir, strategy))
    one = losses(one_rank_run(shared_dir))
    assert_same_losses(two, one)


def test_zero_with_many_small_groups_resumes_exactly_after_kill(tmp_path, shared_dir):
    expected = losses(small_bucket_run(shared_dir, "deepspeed_zero2"))
    workdir = str(tmp_path / "run")
    proc = torchrun.start(workdir, "deepspeed_zero2", bindings=BINDINGS + SMALL_BUCKETS)
    torchrun.wait_until(lambda: checkpoint.latest(workdir) is not None, proc)
    torchrun.kill_session(proc)
    assert checkpoint.read_meta(checkpoint.latest(workdir))["step"] < STEPS
    torchrun.run(workdir, "deepspeed_zero2", bindings=BINDINGS + SMALL_BUCKETS, log_name="restart.log")
    assert losses(workdir) == expected


def memory_record(workdir: str) -> dict:
    return next(r for r in read_metrics(workdir) if r["split"] == "memory")


@pytest.mark.parametrize("strategy, sharded", [
    ("fsdp", ("parameter", "optimizer")),
    ("deepspeed_zero3", ("parameter", "optimizer")),
    ("deepspeed_zero2", ("optimizer",)),
    ("deepspeed_zero1", ("optimizer",)),
    ("fairscale", ("optimizer",)),
])
def test_each_rank_holds_about_half_of_what_is_sharded(shared_dir, strategy, sharded):
    """Optimizer bytes include ZeRO's fp32 master weights wherever they are a copy of their own: in
    fp32 they are shared with the weights, so a ZeRO rank holds half of DDP's optimizer bytes."""
    record = memory_record(reference_run(shared_dir, strategy))
    whole = memory_record(reference_run(shared_dir, "ddp"))  # replicated: every rank holds all
    for kind in ("parameter", "optimizer"):
        for rank in (0, 1):
            share = record[f"{kind}_bytes/rank_{rank}"] / whole[f"{kind}_bytes/rank_0"]
            if kind in sharded:
                assert 0.4 < share < 0.6, (kind, rank, share)
            else:
                assert share > 0.95, (kind, rank, share)


@pytest.mark.parametrize("strategy, small_buckets", [("fsdp", False), ("deepspeed_zero3", False),
                                                     ("deepspeed_zero2", True), ("deepspeed_zero3", True)])
def test_export_of_a_sharded_checkpoint_starts_single_with_the_same_eval_loss(tmp_path, shared_dir, strategy,
                                                                              small_buckets):
    source = small_bucket_run(shared_dir, strategy) if small_buckets else reference_run(shared_dir, strategy)
    final_eval = [r for r in read_metrics(source) if r["split"] == "eval"][-1]["loss"]
    out = str(tmp_path / "model.safetensors")
    assert export_main([source, "--out", out]) == 0
    result = train_in_process(str(tmp_path / "single"), TINY_PVR + [
        "train.steps = 1", "AdamW.lr = 0.0", "train.eval_every = 1", "CPVR.eval_examples_per_level = 16",
        f"train.init_from = '{out}'"])
    assert math.isclose(result.metrics["eval"]["loss"], final_eval, rel_tol=1e-6)


@pytest.mark.parametrize("strategy", ["deepspeed_zero2", "deepspeed_zero3"])
def test_deepspeeds_own_zero_to_fp32_recovers_our_export_bit_for_bit(tmp_path, shared_dir, strategy):
    """The script DeepSpeed saves beside each ZeRO checkpoint runs in the pinned environment
    (it needs huggingface_hub) and reads our checkpoint folder as it is."""
    folder = checkpoint.latest(reference_run(shared_dir, strategy))
    ours = str(tmp_path / "ours.safetensors")
    assert export_main([folder, "--out", ours]) == 0
    script = os.path.join(folder, "zero_to_fp32.py")
    done = subprocess.run([sys.executable, script, folder, str(tmp_path / "theirs")], env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    theirs = torch.load(tmp_path / "theirs" / "pytorch_model.bin", map_location="cpu", weights_only=True)
    expected = load_file(ours)
    assert theirs.keys() == expected.keys()
    for name, tensor in expected.items():
        assert theirs[name].dtype == tensor.dtype and torch.equal(theirs[name], tensor), name


def recorded_hparams(workdir: str) -> dict:
    """The hyperparameters of the run's TensorBoard HParams session."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import plugin_data_pb2
    events = event_accumulator.EventAccumulator(os.path.join(workdir, "tb"),
                                                size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    for content in events.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            return {k: v.string_value or v.number_value for k, v in data.session_start_info.hparams.items()}
    raise AssertionError(f"no HParams session in {workdir}")


@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed_zero3"])
def test_hparams_name_the_plain_model_so_runs_of_one_model_share_a_row(shared_dir, strategy):
    """FSDP2 swaps the module's class in place (FSDPTransformerClassifier) and ZeRO-3 partitions
    its parameters; a sharded run still lands in the HParams row of a one-process run."""
    sharded = recorded_hparams(reference_run(shared_dir, strategy))
    single = recorded_hparams(one_rank_run(shared_dir))
    assert sharded["model"] == single["model"] == "TransformerClassifier"
    assert sharded["parameters"] == single["parameters"]


def test_two_nodes_on_loopback_match_a_single_node_run(tmp_path, shared_dir):
    expected = losses(reference_run(shared_dir, "ddp"))
    workdir = str(tmp_path / "run")
    port = torchrun.free_port()
    nodes = [torchrun.start(workdir, "ddp", log_name=f"node{node}.log", launcher=[
        "--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "1",
        "--master-addr", "127.0.0.1", "--master-port", str(port)]) for node in (0, 1)]
    for node, proc in enumerate(nodes):
        torchrun.finish(proc, workdir, log_name=f"node{node}.log")
    assert losses(workdir) == expected


def test_rank_killed_under_max_restarts_resumes_from_the_last_checkpoint(tmp_path, shared_dir):
    expected = losses(reference_run(shared_dir, "ddp"))
    workdir = str(tmp_path / "run")
    proc = torchrun.start(workdir, "ddp", launcher=["--standalone", "--nproc-per-node", "2", "--max-restarts", "1"])

    def rank_one():
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                if child.environ().get("RANK") == "1" and "run.py" in " ".join(child.cmdline()):
                    return child
            except psutil.Error:
                continue
        return None

    torchrun.wait_until(lambda: checkpoint.latest(workdir) is not None and rank_one() is not None, proc)
    killed_after = checkpoint.read_meta(checkpoint.latest(workdir))["step"]
    rank_one().kill()
    torchrun.finish(proc, workdir)
    assert killed_after >= CHECKPOINT_EVERY
    with open(f"{workdir}.torchrun.log") as handle:
        assert "resumed from" in handle.read()
    assert losses(workdir) == expected
