"""Shared layers added for the scaling studies: MoE routing, relative position buckets, token
mixing, convolutions, mixture of softmaxes and factorised embeddings."""
from __future__ import annotations

import pytest
import torch

from models.layers.convolution import DynamicConvolution, LightweightConvolution, SeparableConv1d
from models.layers.embedding import TokenEmbedding
from models.layers.mixer import MixerBlock, TokenMixingMLP
from models.layers.mixture_of_softmaxes import MixtureOfSoftmaxes
from models.layers.moe import SwitchFeedForward, expert_capacity, load_balance_loss
from models.layers.relative_position import relative_position_bucket


def test_switch_routes_at_most_capacity_tokens_to_each_expert_and_drops_the_rest():
    torch.manual_seed(0)
    layer = SwitchFeedForward(8, 16, num_experts=4, capacity_factor=0.5)
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[0] = 5.0  # a strong preference for expert 0 overflows it
    tokens = torch.rand(40, 8) + 0.1
    _, expert, _, kept = layer.route(tokens)
    capacity = expert_capacity(40, 4, 0.5)
    for index in range(4):
        assert int(((expert == index) & kept).sum()) <= capacity
    out, stats = layer(tokens[None])
    dropped = ~kept
    assert dropped.any() and torch.all(out[0][dropped] == 0)  # dropped tokens skip the layer
    assert torch.isclose(stats["dropped_fraction"], dropped.float().mean())


def test_balance_loss_is_one_at_uniform_routing_and_num_experts_when_collapsed():
    experts = 4
    uniform = torch.full((64, experts), 1 / experts)
    spread = torch.arange(64) % experts
    assert torch.isclose(load_balance_loss(uniform, spread), torch.tensor(1.0))
    collapsed = torch.zeros(64, experts)
    collapsed[:, 0] = 1
    assert torch.isclose(load_balance_loss(collapsed, torch.zeros(64, dtype=torch.long)), torch.tensor(4.0))
    skewed = torch.softmax(torch.randn(64, experts) * 3, dim=-1)
    assert load_balance_loss(skewed, skewed.argmax(-1)) > 1.0


def test_relative_buckets_follow_t5():
    relative = torch.tensor([0, -1, 1, -7, -8, -200, 200])
    bidirectional = relative_position_bucket(relative, bidirectional=True, num_buckets=32, max_distance=128)
    assert bidirectional.tolist() == [0, 1, 17, 7, 8, 15, 31]
    causal = relative_position_bucket(relative, bidirectional=False, num_buckets=32, max_distance=128)
    assert causal.tolist()[:3] == [0, 1, 0] and causal[5] == 31  # later keys share bucket 0


def test_token_mixing_ignores_padding_and_works_for_shorter_sequences():
    torch.manual_seed(0)
    mixer = TokenMixingMLP(10).eval()
    x = torch.randn(2, 6, 4)
    padded = torch.cat([x, torch.randn(2, 4, 4)], dim=1)
    mask = torch.cat([torch.ones(2, 6), torch.zeros(2, 4)], dim=1).bool()
    assert torch.allclose(mixer(x), mixer(padded, mask)[:, :6], atol=1e-6)
    block = MixerBlock(10, 4)
    assert block(x).shape == x.shape


@pytest.mark.parametrize("make", [lambda: LightweightConvolution(8, num_heads=2, kernel_size=5, causal=True),
                                  lambda: DynamicConvolution(8, num_heads=2, kernel_size=5, causal=True),
                                  lambda: SeparableConv1d(8, 6, 5, causal=True)])
def test_causal_convolutions_never_see_later_positions(make):
    torch.manual_seed(0)
    layer = make().eval()
    x = torch.randn(2, 9, 8)
    later = x.clone()
    later[:, 5:] = torch.randn(2, 4, 8)
    assert torch.allclose(layer(x)[:, :5], layer(later)[:, :5], atol=1e-6)
    assert not torch.allclose(layer(x)[:, 5:], layer(later)[:, 5:], atol=1e-6)


def test_lightweight_convolution_equals_a_softmaxed_shared_kernel_by_hand():
    torch.manual_seed(0)
    layer = LightweightConvolution(4, num_heads=2, kernel_size=3).eval()
    x = torch.randn(1, 5, 4)
    h = torch.nn.functional.glu(layer.input(x), dim=-1)
    weights = torch.softmax(layer.kernel, dim=-1)
    padded = torch.nn.functional.pad(h, (0, 0, 1, 1))
    expected = torch.stack([sum(weights[c // 2, k] * padded[0, t + k, c] for k in range(3))
                            for t in range(5) for c in range(4)]).view(1, 5, 4)
    assert torch.allclose(layer(x), layer.output(expected), atol=1e-5)


def test_mixture_of_softmaxes_gives_normalised_log_probabilities():
    torch.manual_seed(0)
    head = MixtureOfSoftmaxes(8, num_components=3)
    log_probs = head(torch.randn(2, 5, 8), torch.randn(11, 8))
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 5), atol=1e-5)


def test_factorised_tied_embedding_costs_v_e_plus_e_d_and_logits_match_its_output_matrix():
    embedding = TokenEmbedding(100, 32, factor_dim=8)
    assert sum(p.numel() for p in embedding.parameters()) == 100 * 8 + 8 * 32
    h = torch.randn(3, 32)
    assert torch.allclose(embedding.logits(h), h @ embedding.output_matrix().t(), atol=1e-5)
