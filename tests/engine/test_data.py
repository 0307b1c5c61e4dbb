"""`unwrap` reaches the plain module under every wrapper a strategy adds, and only under those;
`frozen` fixes a network a task holds."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from engine.data import frozen, unwrap


class Holder(torch.nn.Module):
    """A plain model that happens to have a child called `module`."""

    def __init__(self) -> None:
        super().__init__()
        self.module = torch.nn.Linear(2, 2)


@pytest.fixture
def one_rank_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_unwrap_reaches_past_compile_and_leaves_plain_models_whole():
    model = torch.nn.Linear(2, 2)
    assert unwrap(model) is model
    assert unwrap(torch.compile(model)) is model
    holder = Holder()
    assert unwrap(holder) is holder and unwrap(torch.compile(holder)) is holder


def test_unwrap_reaches_past_ddp_at_any_depth(one_rank_group):
    model = torch.nn.Linear(2, 2)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    assert unwrap(ddp) is model
    assert unwrap(torch.compile(ddp)) is model
    holder = Holder()
    assert unwrap(torch.nn.parallel.DistributedDataParallel(holder)) is holder


def test_frozen_fixes_the_module_in_place():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    assert frozen(model) is model
    assert not model.training and not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
