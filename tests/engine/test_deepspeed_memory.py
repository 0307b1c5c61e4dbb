"""DeepSpeed's memory settings (engine/strategies/deepspeed.py), in one process: buckets sized from
the model instead of DeepSpeed's 2-4 GB defaults, and parameter groups split so that ZeRO 1-2 steps
the optimizer on bounded pieces. The 2-rank jobs of tests/engine/test_strategies.py check that the
fp32 master weights are not a second copy (the `memory` record's optimizer bytes) and that losses
still equal one rank's."""
from __future__ import annotations

import pytest
import torch

from engine.errors import ConfigError
from engine.strategies.deepspeed import MAX_BUCKET, MIN_BUCKET, DeepSpeed, split_param_groups
from engine.trainer import Settings

SETTINGS = Settings(steps=1, batch_size=8, micro_batch_size=2)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_buckets_are_sized_from_the_model_not_deepspeeds_defaults(stage):
    zero = DeepSpeed(stage=stage).build_config(SETTINGS, parameters=64 * 10_240_000)["zero_optimization"]
    bucket = 10_240_000 * (1 if stage == 3 else 4)  # 1/64 of the parameters at stage 3, 1/16 below
    assert zero["reduce_bucket_size"] == zero["allgather_bucket_size"] == bucket
    if stage == 3:
        assert zero["stage3_prefetch_bucket_size"] == zero["stage3_max_reuse_distance"] == bucket
        assert zero["sub_group_size"] == bucket and zero["stage3_max_live_parameters"] == 2 * bucket
    else:
        assert not any(key.startswith("stage3_") for key in zero)


def test_the_sized_bucket_stays_between_its_bounds_and_aligned():
    strategy = DeepSpeed(stage=2)
    assert strategy.bucket_elements(1_000) == MIN_BUCKET // 1024 * 1024
    assert strategy.bucket_elements(10**12) == MAX_BUCKET // 1024 * 1024
    assert strategy.bucket_elements(100_000_000) % 1024 == 0


def test_bound_sizes_win():
    zero = DeepSpeed(stage=3, bucket_size=4096, reduce_bucket_size=2048,
                     zero_config={"stage3_param_persistence_threshold": 0}).build_config(
        SETTINGS, parameters=10**9)["zero_optimization"]
    assert zero["reduce_bucket_size"] == 2048 and zero["allgather_bucket_size"] == 4096
    assert zero["sub_group_size"] == 4096 and zero["stage3_param_persistence_threshold"] == 0


@pytest.mark.parametrize("value", [0, -5, 2.5, True])
def test_a_bucket_size_that_is_not_a_positive_count_is_a_config_error(value):
    with pytest.raises(ConfigError, match="DeepSpeed.bucket_size"):
        DeepSpeed(bucket_size=value)


def test_split_groups_bound_each_step_and_keep_every_option_and_the_order():
    layers = [torch.nn.Linear(100, 100) for _ in range(5)]  # 10,100 elements each
    weights = [layer.weight for layer in layers]
    biases = [layer.bias for layer in layers]
    optimizer = torch.optim.AdamW([{"params": weights, "weight_decay": 0.1},
                                   {"params": biases, "weight_decay": 0.0, "lr": 5e-4}], lr=1e-3)
    split_param_groups(optimizer, 25_000)
    groups = optimizer.param_groups
    assert [len(g["params"]) for g in groups] == [2, 2, 1, 5]
    assert [p for g in groups for p in g["params"]] == weights + biases
    assert all(sum(p.numel() for p in g["params"]) <= 25_000 for g in groups[:3])
    assert [g["weight_decay"] for g in groups] == [0.1, 0.1, 0.1, 0.0]
    assert [g["lr"] for g in groups] == [1e-3, 1e-3, 1e-3, 5e-4]
    assert all(g["betas"] == (0.9, 0.999) for g in groups)


def test_a_parameter_larger_than_the_size_is_a_group_of_its_own():
    big, small = torch.nn.Parameter(torch.zeros(1000)), torch.nn.Parameter(torch.zeros(10))
    optimizer = torch.optim.SGD([small, big, small.new_zeros(1).requires_grad_()], lr=0.1)
    split_param_groups(optimizer, 100)
    assert [len(g["params"]) for g in optimizer.param_groups] == [1, 1, 1]
