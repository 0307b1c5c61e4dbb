"""Hyper-modules: generated layers equal ordinary layers of the generated weights, routing is a
distribution, gradients reach the pool and the router, and Hyper-UT reports its router."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from engine.errors import ConfigError
from models.hyperut import HyperBlock, HyperUT, HyperUViT
from models.layers.block import TransformerBlock
from models.layers.generated import GeneratedLinear
from models.layers.router import PoolRouter, Routing


def routing(weights: torch.Tensor, pool: torch.Tensor) -> Routing:
    return Routing(weights=weights, pool=pool)


@pytest.mark.parametrize("rank", [None, 3])
@pytest.mark.parametrize("per_token", [False, True])
def test_pool_of_one_is_an_ordinary_linear_layer_of_the_generated_weights(rank, per_token):
    torch.manual_seed(0)
    layer = GeneratedLinear(6, 5, d_embed=4, rank=rank)
    pool = torch.randn(1, 4)
    x = torch.randn(3, 7, 6)
    weights = torch.ones(3, 7, 1) if per_token else torch.ones(3, 1)
    weight = layer.generate(pool[0])  # (d_in, d_out)
    bias = layer.bias(pool[0])
    expected = F.linear(x, weight.t(), bias)
    assert torch.allclose(layer(x, routing(weights, pool)), expected, atol=1e-5)


@pytest.mark.parametrize("rank", [None, 2])
def test_per_token_generation_equals_materialised_per_token_weights(rank):
    torch.manual_seed(0)
    layer = GeneratedLinear(6, 5, d_embed=4, rank=rank)
    pool = torch.randn(3, 4)
    weights = torch.softmax(torch.randn(2, 7, 3), dim=-1)
    x = torch.randn(2, 7, 6)
    z = weights @ pool
    per_token = layer.generate(z)  # (2, 7, 6, 5): what the efficient path avoids building
    expected = torch.einsum("nli,nlio->nlo", x, per_token) + layer.bias(z)
    assert torch.allclose(layer(x, routing(weights, pool)), expected, atol=1e-5)


@pytest.mark.parametrize("pool_size", [3, 6])  # fewer pool entries than embedding dims mixes weights
def test_per_example_generation_equals_a_loop_over_examples(pool_size):
    torch.manual_seed(0)
    layer = GeneratedLinear(6, 5, d_embed=4)
    pool = torch.randn(pool_size, 4)
    weights = torch.softmax(torch.randn(4, pool_size), dim=-1)
    x = torch.randn(4, 7, 6)
    batched = layer(x, routing(weights, pool))
    for b in range(4):
        z = weights[b] @ pool
        assert torch.allclose(batched[b], x[b] @ layer.generate(z) + layer.bias(z), atol=1e-5)


@pytest.mark.parametrize("mode", ["per_example", "per_token"])
def test_router_weights_are_distributions_over_the_pool(mode):
    router = PoolRouter(16, pool_size=5, d_embed=8, routing=mode)
    state = torch.randn(3, 7, 16)
    weights = router(state).weights
    assert weights.shape == ((3, 5) if mode == "per_example" else (3, 7, 5))
    assert (weights >= 0).all() and torch.allclose(weights.sum(-1), torch.ones(weights.shape[:-1]))


def test_per_example_routing_ignores_padding():
    router = PoolRouter(16, pool_size=5, d_embed=8)
    state = torch.randn(2, 4, 16)
    padded = torch.cat([state, torch.randn(2, 3, 16)], dim=1)
    mask = torch.cat([torch.ones(2, 4), torch.zeros(2, 3)], dim=1).bool()
    assert torch.allclose(router(state).weights, router(padded, mask).weights, atol=1e-6)


def test_hyper_block_with_a_pool_of_one_is_a_transformer_block_with_the_generated_ffn():
    torch.manual_seed(0)
    hyper = HyperBlock(16, 2, 32, pool_size=1, d_embed=8).eval()
    plain = TransformerBlock(16, 2, 32).eval()
    plain.attention.load_state_dict(hyper.attention.state_dict())
    plain.norm1.load_state_dict(hyper.norm1.state_dict())
    plain.norm2.load_state_dict(hyper.norm2.state_dict())
    z = hyper.router.pool[0]
    with torch.no_grad():
        for name in ("inner", "outer"):
            generated = getattr(hyper.feedforward, name)
            getattr(plain.feedforward, name).weight.copy_(generated.generate(z).t())
            getattr(plain.feedforward, name).bias.copy_(generated.bias(z))
    x = torch.randn(3, 6, 16)
    out, weights = hyper(x)
    assert torch.allclose(out, plain(x), atol=1e-5)
    assert torch.equal(weights, torch.ones(3, 1))


@pytest.mark.parametrize("generate", [("ffn",), ("attention", "ffn")])
@pytest.mark.parametrize("mode", ["per_example", "per_token"])
def test_gradients_reach_the_pool_and_the_router(generate, mode):
    torch.manual_seed(0)
    block = HyperBlock(16, 2, 32, pool_size=4, d_embed=8, routing=mode, generate=generate)
    out, _ = block(torch.randn(3, 6, 16))
    out.pow(2).mean().backward()
    for name in ("pool", "query.weight", "key.weight"):
        grad = dict(block.router.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    if "attention" in generate:
        assert block.attention.query.weights.weight.grad.abs().sum() > 0


def test_hyper_ut_reports_router_entropy_and_pool_usage_within_bounds():
    torch.manual_seed(0)
    model = HyperUT(vocab_size=10, num_classes=5, max_len=8, d_model=16, num_heads=2, max_steps=4)
    output = model(torch.randint(0, 10, (4, 8)))
    diagnostics = output["diagnostics"]
    pool_size = model.encoder.recurrent.block.router.pool.shape[0]
    assert 0 <= diagnostics["router_entropy"] <= math.log(pool_size) + 1e-6
    assert 1 - 1e-6 <= diagnostics["pool_perplexity"] <= pool_size + 1e-4
    assert output["aux_loss"] > 0 and output["logits"].shape == (4, 5)


def test_hyper_u_vit_removes_halted_images_and_matches_the_masked_run():
    torch.manual_seed(1)
    model = HyperUViT(image_size=8, patch_size=4, num_classes=3, channels=1, d_model=16, num_heads=2,
                      max_steps=5).eval()
    with torch.no_grad():
        model.encoder.recurrent.act.halting.weight.normal_(0, 3.0)
        model.encoder.recurrent.act.halting.bias.fill_(-1.5)
    images = torch.rand(16, 1, 8, 8) * 4
    shrunk = model(images)
    assert shrunk["ponder"].unique().numel() > 1  # images halt at different steps
    model.encoder.recurrent.act.shrink_batch = False
    masked = model(images)
    assert torch.allclose(shrunk["logits"], masked["logits"], atol=1e-5)
    assert torch.equal(shrunk["ponder"], masked["ponder"])
    assert (shrunk["ponder_map"] == shrunk["ponder_map"][:, :1]).all()  # per-example halting


@pytest.mark.parametrize("bad", [dict(generate=("conv",)), dict(generate=()), dict(routing="per_batch"),
                                 dict(pool_size=0), dict(rank=100)])
def test_bad_hyper_settings_are_config_errors(bad):
    with pytest.raises(ConfigError):
        HyperBlock(16, 2, 32, **bad)


def test_generated_weights_move_at_an_ordinary_layers_pace_under_adam():
    torch.manual_seed(0)
    generated, plain = GeneratedLinear(8, 8, d_embed=32), torch.nn.Linear(8, 8)
    pool = torch.randn(4, 32)
    weights = torch.softmax(torch.randn(16, 4) * 3, dim=-1)
    x = torch.randn(16, 5, 8)
    before = generated.example_weights(routing(weights, pool)).detach()
    plain_before = plain.weight.detach().clone()
    for layer, run in ((generated, lambda: generated(x, routing(weights, pool))), (plain, lambda: plain(x))):
        optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3)
        run().pow(2).mean().backward()
        optimizer.step()
    generated_step = (generated.example_weights(routing(weights, pool)).detach() - before).abs().mean()
    plain_step = (plain.weight.detach() - plain_before).abs().mean()
    # Without the generator gain the step would be about d_embed (32) times larger.
    assert generated_step < 3 * plain_step


@pytest.mark.parametrize("mode", ["per_example", "per_token"])
def test_pool_weights_are_generated_once_per_forward_with_unchanged_outputs_and_gradients(mode, monkeypatch):
    def run(hold: bool) -> tuple[torch.Tensor, list[torch.Tensor], int]:
        torch.manual_seed(0)
        model = HyperUT(vocab_size=10, num_classes=5, max_len=8, d_model=16, num_heads=2, max_steps=4, act=False,
                        block=lambda *a, **k: HyperBlock(*a, **k, pool_size=4, d_embed=8, routing=mode,
                                                         generate=("attention", "ffn"), hold_pool_weights=hold))
        calls = []
        original = GeneratedLinear.generate
        monkeypatch.setattr(GeneratedLinear, "generate", lambda self, z: calls.append(z.shape) or original(self, z))
        tokens = torch.randint(0, 10, (3, 8), generator=torch.Generator().manual_seed(1))
        logits = []
        for _ in range(2):  # two forwards and backwards without a step between: accumulation
            output = model(tokens)
            output["logits"].square().mean().backward()
            logits.append(output["logits"].detach())
        monkeypatch.undo()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        assert not any(layer._held for layer in model.modules() if isinstance(layer, GeneratedLinear))
        return torch.stack(logits), grads, sum(1 for shape in calls if shape == (4, 8))

    held_logits, held_grads, held_calls = run(True)
    fresh_logits, fresh_grads, fresh_calls = run(False)
    assert held_calls == 2 * 6 and fresh_calls == 4 * held_calls  # 6 generated layers, 4 steps, 2 forwards
    assert torch.equal(held_logits, fresh_logits)
    assert len(held_grads) == len(fresh_grads)
    for held, fresh in zip(held_grads, fresh_grads):
        assert torch.allclose(held, fresh, rtol=1e-5, atol=1e-7)
