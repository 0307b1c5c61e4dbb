"""Per-module optimizer options: the classifier head's own weight decay and learning rate."""
from __future__ import annotations

import pytest
import torch

from engine.errors import ConfigError
from engine.optim import param_groups
from models.mlp import MLP


def model() -> MLP:
    return MLP(input_dim=6, num_classes=3, hidden=(5,))


def test_without_overrides_the_groups_are_decay_then_no_decay():
    groups = param_groups(model())
    assert [len(g["params"]) for g in groups] == [2, 2] and groups[1]["weight_decay"] == 0.0
    assert "weight_decay" not in groups[0]  # the optimizer's own value applies


def test_the_head_gets_its_own_weight_decay_and_learning_rate():
    net = model()
    groups = param_groups(net, overrides={"head": {"weight_decay": 3.0, "lr": 0.5}})
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert by_param[id(net.head.weight)]["weight_decay"] == 3.0 and by_param[id(net.head.weight)]["lr"] == 0.5
    assert by_param[id(net.head.bias)]["weight_decay"] == 0.0 and by_param[id(net.head.bias)]["lr"] == 0.5
    assert "lr" not in by_param[id(net.stages[0].linear.weight)] and groups[0]["params"][0] is net.stages[0].linear.weight
    # AdamW's decoupled decay then shrinks only the head's weights (zero gradients isolate it).
    optimizer = torch.optim.AdamW(groups, lr=0.1, weight_decay=0.0)
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    after = dict(net.named_parameters())
    assert torch.allclose(after["head.weight"], before["head.weight"] * (1 - 0.5 * 3.0))
    assert all(torch.equal(after[n], before[n]) for n in before if n != "head.weight")


def test_bad_overrides_are_config_errors():
    with pytest.raises(ConfigError, match="holds no parameters"):
        param_groups(model(), overrides={"classifier": {"weight_decay": 1.0}})
    with pytest.raises(ConfigError, match="options must be numbers"):
        param_groups(model(), overrides={"head": {"momentum": 0.9}})
