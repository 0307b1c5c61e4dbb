"""Achieved FLOP/s and MFU: the peak table, the 3x-forward arithmetic, and what a run logs."""
from __future__ import annotations

import os
import types

import pytest
import torch
from tensorboard.backend.event_processing import event_accumulator

from engine import analysis, throughput
from engine.logging import read_metrics
from tests.helpers import TINY_PVR, train_in_process


def test_a_known_accelerator_gets_its_datasheet_peak_and_an_unknown_one_none():
    assert throughput.peak_flops_per_s("NVIDIA H100 80GB HBM3", "bf16") == 989.5e12  # SXM
    assert throughput.peak_flops_per_s("NVIDIA H100 PCIe", "fp32") == 51e12
    assert throughput.peak_flops_per_s("NVIDIA H100 NVL", "tf32") == 417.5e12
    assert throughput.peak_flops_per_s("NVIDIA H200", "bf16") == 989.5e12
    assert throughput.peak_flops_per_s("NVIDIA A100-SXM4-80GB", "tf32") == 156e12
    assert throughput.peak_flops_per_s("NVIDIA L4", "bf16") == 121e12
    assert throughput.peak_flops_per_s("Tesla V100-SXM2-16GB", "fp16") == 125e12
    assert throughput.peak_flops_per_s("Tesla V100-PCIE-32GB", "fp32") == 14e12
    # Volta: no bf16 tensor cores (no MFU claimed); TF32 asked for runs as plain fp32.
    assert throughput.peak_flops_per_s("Tesla V100-SXM2-16GB", "bf16") is None
    assert throughput.peak_flops_per_s("Tesla V100-SXM2-16GB", "tf32") == 15.7e12
    for unknown in ("NVIDIA L40S", "NVIDIA GeForce RTX 4090", "", None):
        assert throughput.peak_flops_per_s(unknown, "bf16") is None, unknown
    with pytest.raises(ValueError, match="precision"):
        throughput.peak_flops_per_s("NVIDIA H100 PCIe", "fp8")
    assert all("https://www.nvidia.com/" in peak.source for peak in throughput.PEAKS)


def test_achieved_flops_are_three_forwards_per_example_in_training():
    assert throughput.achieved_flops_per_s(1e6, 1000) == 3e9
    assert throughput.achieved_flops_per_s(1e6, 1000, training=False) == 1e9
    # Two ranks share a global 1000 ex/s: half the FLOP/s each, MFU against one device's peak.
    metrics = throughput.perf_metrics(1e6, 1000, world_size=2, peak_per_device=1e10)
    assert metrics == {"perf/achieved_gflops": 3.0, "perf/achieved_gflops_per_rank": 1.5, "perf/mfu": 0.15}
    assert "perf/mfu" not in throughput.perf_metrics(1e6, 1000, world_size=1, peak_per_device=None)


def test_the_peak_column_follows_the_runs_precision():
    cpu, plain = torch.device("cpu"), types.SimpleNamespace()
    assert throughput.run_precision("fp32", plain, cpu) == "fp32"
    assert throughput.run_precision("bf16", plain, cpu) == "bf16"
    assert throughput.run_precision("fp32", types.SimpleNamespace(bf16=True), cpu) == "bf16"  # DeepSpeed.bf16
    assert throughput.run_precision("fp32", types.SimpleNamespace(param_dtype="fp16"), cpu) == "fp16"  # FSDP
    assert throughput.device_name(cpu) is None  # the CPU: achieved FLOP/s only


def _spy_on_measured_flops(monkeypatch, result=None) -> list[int]:
    """Record what each FLOP measurement returns (or make it return `result`)."""
    seen, real = [], analysis.measured_flops

    def spy(run):
        seen.append(real(run) if result is None else result)
        return seen[-1]

    monkeypatch.setattr(analysis, "measured_flops", spy)
    return seen


def test_a_cpu_run_logs_achieved_gflops_from_the_start_measurement_and_no_mfu(tmp_path, monkeypatch, capsys):
    measured = _spy_on_measured_flops(monkeypatch)
    workdir = str(tmp_path / "run")
    train_in_process(workdir, TINY_PVR + ["train.steps = 3"])
    assert len(measured) == 1  # measured once, at start, and reused
    per_example = measured[0] // 2  # _check_model_on_task measures a batch of 2
    train = [r for r in read_metrics(workdir) if r["split"] == "train"]
    assert len(train) == 3
    for record in train:
        assert record["perf/achieved_gflops"] > 0 and "perf/mfu" not in record
        assert record["perf/achieved_gflops"] == pytest.approx(3 * per_example * record["examples_per_s"] / 1e9)
        assert record["perf/achieved_gflops_per_rank"] == record["perf/achieved_gflops"]  # one rank
    out = capsys.readouterr().out
    assert "FLOP/s" in out and "MFU" not in out
    events = event_accumulator.EventAccumulator(os.path.join(workdir, "tb"))
    events.Reload()
    assert "train/perf/achieved_gflops" in events.Tags()["scalars"]


def test_on_a_known_accelerator_mfu_is_achieved_over_peak(tmp_path, monkeypatch):
    monkeypatch.setattr(throughput, "device_name", lambda device: "NVIDIA H100 80GB HBM3")
    workdir = str(tmp_path / "run")
    train_in_process(workdir, TINY_PVR + ["train.steps = 2"])
    train = [r for r in read_metrics(workdir) if r["split"] == "train"]
    assert train
    for record in train:  # fp32 run: the fp32 column
        assert record["perf/mfu"] == pytest.approx(record["perf/achieved_gflops"] * 1e9 / 67e12)


def test_without_a_flop_count_nothing_is_logged_and_the_run_says_so_once(tmp_path, monkeypatch, capsys):
    _spy_on_measured_flops(monkeypatch, result=0)
    workdir = str(tmp_path / "run")
    train_in_process(workdir, TINY_PVR + ["train.steps = 2"])
    # perf/data_wait_ms (time waiting for batches) needs no FLOP count; the FLOP-based ones are absent.
    assert not any(k.startswith("perf/") and k != "perf/data_wait_ms" for r in read_metrics(workdir) for k in r)
    assert capsys.readouterr().out.count("perf/achieved_gflops and perf/mfu are not logged") == 1
