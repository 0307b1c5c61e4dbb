"""Adaptive computation time and the Universal Transformer: Graves' rules, frozen halted
positions, batch shrinking, fixed depth as a weight-tied Transformer."""
from __future__ import annotations

import math

import pytest
import torch

from engine.errors import ConfigError
from models.layers.act import AdaptiveComputationTime
from models.layers.pooling import pool
from models.layers.recurrent import coordinate_signal
from models.universal import UniversalTransformerClassifier


def scripted_steps(values: list[float]):
    """A step function whose state at step n is `values[n - 1]` everywhere (1 channel)."""
    def step(state, n, mask, rows):
        return torch.full_like(state, values[n - 1])
    return step


def identity_halting(act: AdaptiveComputationTime) -> AdaptiveComputationTime:
    """p = sigmoid(state): the halting unit reads the 1-channel state as its logit."""
    with torch.no_grad():
        act.halting.weight.fill_(1.0)
        act.halting.bias.zero_()
    return act


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_hand_computed_three_step_case_matches_graves():
    # p = 0.3, 0.4, 0.5: cumulative 0.3, 0.7, then 1.2 >= 0.99 -> N = 3, R = 1 - 0.7 = 0.3.
    act = identity_halting(AdaptiveComputationTime(1, max_steps=8, normalize=False))
    s = [logit(0.3), logit(0.4), logit(0.5)]
    result = act(scripted_steps(s), torch.zeros(2, 3, 1))
    assert torch.allclose(result.steps, torch.full((2, 3), 3.0))
    assert torch.allclose(result.remainders, torch.full((2, 3), 0.3), atol=1e-6)
    assert torch.allclose(result.ponder_cost, torch.full((2, 3), 3.3), atol=1e-6)
    expected = 0.3 * s[0] + 0.4 * s[1] + 0.3 * s[2]
    assert torch.allclose(result.output, torch.full((2, 3, 1), expected), atol=1e-6)


def test_max_steps_forces_the_last_step_to_take_the_remainder():
    act = identity_halting(AdaptiveComputationTime(1, max_steps=2, normalize=False))
    s = [logit(0.3), logit(0.4)]
    result = act(scripted_steps(s), torch.zeros(1, 2, 1))
    assert torch.allclose(result.steps, torch.full((1, 2), 2.0))
    assert torch.allclose(result.remainders, torch.full((1, 2), 0.7), atol=1e-6)
    assert torch.allclose(result.output, torch.full((1, 2, 1), 0.3 * s[0] + 0.7 * s[1]), atol=1e-6)


def random_act(level: str, shrink: bool, d: int = 8, seed: int = 0) -> AdaptiveComputationTime:
    torch.manual_seed(seed)
    act = AdaptiveComputationTime(d, max_steps=6, halting_bias_init=-1.0, level=level, shrink_batch=shrink)
    with torch.no_grad():
        act.halting.weight.normal_(0, 1.5)  # varied halting times across positions and examples
    return act


def mixing_step(weight: torch.Tensor, calls: list | None = None):
    """A deterministic step that mixes positions (like attention) and keeps channel 0 at 1."""
    def step(state, n, mask, rows):
        if calls is not None:
            calls.append((n, rows.clone(), state.clone()))
        mixed = torch.tanh(state @ weight + state.mean(dim=1, keepdim=True) + 0.1 * n)
        return torch.cat([torch.ones_like(mixed[..., :1]), mixed[..., 1:]], dim=-1)
    return step


@pytest.mark.parametrize("level", ["per_token", "per_example"])
def test_halting_weights_sum_to_one_at_every_position(level):
    act = random_act(level, shrink=True)
    weight = torch.randn(8, 8) * 0.7
    result = act(mixing_step(weight), torch.randn(6, 5, 8))
    # Channel 0 of every state is 1, so the output's channel 0 is the sum of the step weights.
    assert torch.allclose(result.output[..., 0], torch.ones(6, 5), atol=1e-6)
    assert (result.steps >= 1).all() and (result.steps <= act.max_steps).all()
    assert result.steps.unique().numel() > 1  # the case is not trivial: halting times differ
    if level == "per_example":
        assert (result.steps == result.steps[:, :1]).all()


def test_halted_positions_are_frozen_while_others_run():
    act = random_act("per_token", shrink=False)
    calls = []
    result = act(mixing_step(torch.randn(8, 8) * 0.7, calls), torch.randn(4, 5, 8))
    inputs = torch.stack([state for _, _, state in calls])  # (steps run, B, L, d)
    checked = 0
    for b in range(4):
        for t in range(5):
            halted_at = int(result.steps[b, t])
            # The state entering every later step is the one the position halted with.
            for later in range(halted_at + 1, len(calls)):
                assert torch.equal(inputs[later, b, t], inputs[halted_at, b, t])
                checked += 1
    assert checked > 0


def test_removing_halted_examples_gives_the_same_outputs_as_masking_them():
    x = torch.randn(8, 5, 8)
    weight = torch.randn(8, 8) * 0.7
    calls = []
    shrunk = random_act("per_example", shrink=True)(mixing_step(weight, calls), x)
    masked = random_act("per_example", shrink=False)(mixing_step(weight), x)
    for name in ("output", "steps", "remainders"):
        assert torch.allclose(getattr(shrunk, name), getattr(masked, name), atol=1e-6), name
    rows_per_step = [len(rows) for _, rows, _ in calls]
    assert rows_per_step[0] == 8 and min(rows_per_step) < 8  # examples really left the batch
    assert rows_per_step == sorted(rows_per_step, reverse=True)


def test_an_all_halted_batch_exits_the_loop():
    act = AdaptiveComputationTime(8, max_steps=8, halting_bias_init=10.0)
    calls = []
    result = act(mixing_step(torch.eye(8), calls), torch.randn(3, 4, 8))
    assert len(calls) == 1 and (result.steps == 1).all()


def tiny_ut(**overrides) -> UniversalTransformerClassifier:
    torch.manual_seed(0)
    settings = dict(vocab_size=10, num_classes=5, max_len=8, d_model=16, num_heads=2, max_steps=4)
    return UniversalTransformerClassifier(**{**settings, **overrides}).eval()


def by_hand(model: UniversalTransformerClassifier, tokens: torch.Tensor, steps: int) -> torch.Tensor:
    """Embed, apply the shared block `steps` times with the coordinate signal, then classify."""
    x = model.embed(torch.cat([torch.full_like(tokens[:, :1], model.cls_id), tokens], dim=1))
    x = model.positions(x)
    block = model.encoder.recurrent.block
    for n in range(1, steps + 1):
        x = block(x + coordinate_signal(x.shape[1], n, 16, x.device))
    return model.head(pool(model.norm(x), None, "cls"))


def test_fixed_depth_ut_is_a_weight_tied_transformer():
    model = tiny_ut(act=False, max_steps=3)
    tokens = torch.randint(0, 10, (4, 8))
    output = model(tokens)
    assert torch.allclose(output["logits"], by_hand(model, tokens, 3), atol=1e-5)
    assert (output["ponder"] == 3).all() and "aux_loss" not in output


def test_halting_forced_at_step_one_equals_one_block_application():
    model = tiny_ut(act=True, halting_bias_init=10.0)
    tokens = torch.randint(0, 10, (4, 8))
    output = model(tokens)
    assert torch.allclose(output["logits"], by_hand(model, tokens, 1), atol=1e-5)
    assert (output["ponder_map"] == 1).all()


def test_default_halting_bias_does_not_halt_everything_after_one_or_two_steps():
    tokens = torch.randint(0, 10, (4, 8))
    deep = tiny_ut(act=True, max_steps=8)(tokens)  # bias -1: p = 0.27 -> 4 steps at init
    assert (deep["ponder_map"] >= 3).all()
    shallow = tiny_ut(act=True, max_steps=8, halting_bias_init=1.0)(tokens)  # p = 0.73: the trap
    assert (shallow["ponder_map"] == 2).all()


def test_padding_is_ignored_by_outputs_and_ponder():
    model = tiny_ut(act=True, pooling="mean", positions="learned")
    with torch.no_grad():
        model.encoder.recurrent.act.halting.weight.normal_(0, 1.0)
    tokens = torch.randint(0, 10, (3, 5))
    padded = torch.cat([tokens, torch.zeros(3, 3, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(3, 5), torch.zeros(3, 3)], dim=1).bool()
    plain, masked = model(tokens), model(padded, mask)
    assert torch.allclose(plain["logits"], masked["logits"], atol=1e-5)
    assert torch.allclose(plain["ponder"], masked["ponder"], atol=1e-6)
    assert (masked["ponder_map"][:, 6:] == 0).all()
    assert torch.allclose(plain["aux_loss"], masked["aux_loss"], atol=1e-6)


def test_ponder_cost_reaches_the_halting_unit_through_the_remainder():
    model = tiny_ut(act=True, ponder_weight=1.0)
    model.train()
    output = model(torch.randint(0, 10, (4, 8)))
    output["aux_loss"].backward()
    halting = model.encoder.recurrent.act.halting
    assert halting.bias.grad is not None and halting.bias.grad.abs() > 0


@pytest.mark.parametrize("bad", [dict(max_steps=0), dict(act_epsilon=1.5), dict(halting_level="per_batch"),
                                 dict(ponder_weight=-1.0)])
def test_bad_act_settings_are_config_errors(bad):
    with pytest.raises(ConfigError):
        tiny_ut(act=True, **bad)
