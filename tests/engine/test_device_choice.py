"""Which device a rank trains on: the GPU of its local rank, the CPU on request, and a clear error
where a node has more ranks than GPUs (NCCL cannot share one GPU between two ranks of a job)."""
from __future__ import annotations

import pytest
import torch

from engine import distributed
from engine.errors import ConfigError


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_each_local_rank_gets_its_own_gpu(two_gpus, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.default_device() == torch.device("cuda", 1)


def test_a_local_rank_beyond_the_gpus_is_a_config_error_that_names_the_way_out(two_gpus, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(ConfigError, match=r"local rank 3 has no GPU.*has 2.*--nproc-per-node 2.*GINTRAIN_DEVICE=cpu"):
        distributed.default_device()


def test_a_process_given_its_own_gpu_by_the_scheduler_uses_it_at_any_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "5")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    assert distributed.default_device() == torch.device("cuda", 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5")  # one of six visible: not its own
    with pytest.raises(ConfigError, match="no GPU of its own"):
        distributed.default_device()


def test_gintrain_device_cpu_keeps_a_gpu_machine_on_the_cpu(two_gpus, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("GINTRAIN_DEVICE", "CPU")
    assert distributed.default_device() == torch.device("cpu")


def test_gintrain_device_must_name_a_known_device(monkeypatch):
    monkeypatch.setenv("GINTRAIN_DEVICE", "tpu")
    with pytest.raises(ConfigError, match="'cpu' or 'cuda'"):
        distributed.default_device()


def test_asking_for_cuda_without_a_gpu_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("GINTRAIN_DEVICE", "cuda")
    with pytest.raises(ConfigError, match="no CUDA device"):
        distributed.default_device()


def test_a_tasks_frozen_teacher_follows_the_batch_to_its_device():
    """PseudoLabelTask, GiftTask and Distillation hold a teacher the engine does not place: it moves
    to the batch's device on first use (the pre-flight check runs on CPU, training on the GPU)."""
    from engine.data import device_of, follow
    teacher = torch.nn.Linear(3, 2)
    assert follow(teacher, torch.device("cpu")) is teacher and device_of(teacher) == torch.device("cpu")
    follow(teacher, torch.device("meta"))  # any device other than the current one
    assert device_of(teacher).type == "meta"
