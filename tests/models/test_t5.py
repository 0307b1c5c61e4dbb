"""T5 and its architecture blocks: published parameter counts, FLOPs, causality, training, errors."""
from __future__ import annotations

import os
import re

import gin
import pytest
import torch

from engine import analysis, config
from engine.errors import ConfigError
from models.t5 import T5, t5_flops_per_token, t5_forward_flops, t5_parameter_count
from tests.helpers import REPO

ARCH_DIR = os.path.join(REPO, "gin", "scaling", "arch")
ARCHS = sorted(f[:-4] for f in os.listdir(ARCH_DIR) if f.endswith(".gin"))
SHAPE_KEYS = ("d_model", "d_ff", "d_kv", "num_heads", "encoder_layers", "decoder_layers")

# HF-reported counts (google/t5-efficient-*), which the issue asks us to hit within 0.1%.
PUBLISHED_EXACT = {"base": 222.93e6, "mini": 31.23e6, "small_dl4": 52.13e6, "xxl": 11_307.38e6,
                   "small_nl16": 133.9e6}
# The shape table's rounded figures: the count must round to them.
PUBLISHED_ROUNDED = {"tiny": (15.6e6, 0.05e6), "small": (60.5e6, 0.05e6), "large": (737.7e6, 0.05e6),
                     "xl": (2.85e9, 0.005e9), "small_nl24": (192.7e6, 0.05e6), "base_nl36": (619.4e6, 0.05e6),
                     "large_nl36": (1090.1e6, 0.05e6), "xl_nl32": (3791.2e6, 0.05e6)}


def size_shape(name: str) -> dict[str, int]:
    config.reset()
    config.parse([os.path.join(REPO, "gin", "scaling", "size", f"{name}.gin")], ["T5.vocab_size = 32128"])
    shape = {key: gin.query_parameter(f"T5.{key}") for key in SHAPE_KEYS}
    return shape


def built_count(name: str) -> int:
    """Parameters of the T5 built from a size file, on the meta device (no memory, any size)."""
    size_shape(name)
    with torch.device("meta"):
        model = T5()
    return analysis.count_parameters(model)


@pytest.mark.parametrize("name", sorted(PUBLISHED_EXACT))
def test_built_and_analytic_counts_match_published_within_a_tenth_of_a_percent(name):
    published = PUBLISHED_EXACT[name]
    analytic = t5_parameter_count(**size_shape(name))
    assert built_count(name) == analytic
    assert abs(analytic - published) / published < 1e-3


@pytest.mark.parametrize("name", sorted(PUBLISHED_ROUNDED))
def test_counts_round_to_the_shape_table(name):
    published, half_unit = PUBLISHED_ROUNDED[name]
    assert abs(t5_parameter_count(**size_shape(name)) - published) <= half_unit


def test_small_nl16_costs_63_percent_of_base_flops():
    small, base = size_shape("small_nl16"), size_shape("base")
    per_token = sum(t5_flops_per_token(**small)) / sum(t5_flops_per_token(**base))
    per_example = t5_forward_flops(**small) / t5_forward_flops(**base)
    assert abs(per_token - 0.631) / 0.631 < 0.05 and abs(per_example - 0.631) / 0.631 < 0.05


def test_analytic_flops_agree_with_a_forward_pass_count():
    shape = dict(d_model=64, d_ff=256, d_kv=16, num_heads=4, encoder_layers=2, decoder_layers=3)
    model = T5(vocab_size=128, **shape).eval()
    inputs, targets = torch.randint(2, 128, (1, 48)), torch.randint(2, 128, (1, 12))
    with torch.no_grad():
        measured = analysis.measured_flops(lambda: model(inputs, targets))
    analytic = t5_forward_flops(vocab_size=128, input_length=48, target_length=12, **shape)
    assert abs(measured - analytic) / analytic < 0.05


def tiny_model(arch: str, **bindings) -> T5:
    config.reset()
    config.parse([os.path.join(REPO, "gin", "scaling", "arch", f"{arch}.gin")],
                 ["T5.vocab_size = 40", "T5.d_model = 32", "T5.d_ff = 64", "T5.d_kv = 8", "T5.num_heads = 4",
                  "T5.encoder_layers = 2", "T5.decoder_layers = 2", "T5.max_input_length = 16",
                  *[f"{k} = {v}" for k, v in bindings.items()]])
    torch.manual_seed(0)
    return T5()


@pytest.mark.parametrize("arch", ARCHS)
def test_decoder_never_reads_later_targets(arch):
    model = tiny_model(arch).eval()
    inputs, targets = torch.randint(2, 40, (2, 13)), torch.randint(2, 40, (2, 6))
    changed = targets.clone()
    changed[:, 3:] = torch.randint(2, 40, (2, 3))
    with torch.no_grad():
        before, after = model(inputs, targets)["logits"], model(inputs, changed)["logits"]
    # Logits at position i see targets < i only (teacher forcing shifts by one).
    assert torch.allclose(before[:, :4], after[:, :4], atol=1e-5)
    assert not torch.allclose(before[:, 4:], after[:, 4:], atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_fits_a_batch_in_a_few_steps(arch):
    model = tiny_model(arch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    inputs, targets = torch.randint(2, 40, (8, 13)), torch.randint(2, 40, (8, 6))
    losses = []
    for _ in range(25):
        out = model(inputs, targets)
        loss = torch.nn.functional.cross_entropy(out["logits"].flatten(0, 1), targets.flatten())
        (loss + out.get("aux_loss", 0.0)).backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::5]


def test_shared_stacks_store_one_layer_and_albert_factorises_the_embedding():
    vanilla, universal = tiny_model("vanilla"), tiny_model("universal")
    albert = tiny_model("albert")
    assert len(universal.encoder) == len(universal.decoder) == 1 and len(vanilla.encoder) == 2
    assert albert.embedding.table.weight.shape == (40, 16)
    assert analysis.count_parameters(albert) < analysis.count_parameters(universal) < analysis.count_parameters(vanilla)


def test_funnel_encoder_halves_the_sequence():
    model = tiny_model("funnel").eval()
    memory, mask, _ = model.encode(torch.randint(2, 40, (2, 13)))
    assert memory.shape == (2, 7, 32)
    assert mask is not None and mask.sum(1).tolist() == [7, 7]  # 13 tokens pad to 14, then 7 pairs


def test_switch_layers_return_a_weighted_balance_loss():
    out = tiny_model("switch")(torch.randint(2, 40, (2, 13)), torch.randint(2, 40, (2, 6)))
    # one expert layer per stack (every 2nd of 2), each weighted 0.01 and >= 0.01 * 1 at best
    assert out["aux_loss"] > 0 and 0 <= out["dropped_fraction"] <= 1


@pytest.mark.parametrize("bindings, message", [
    ({"T5.share_layers": "'all'"}, "share_layers"),
    ({"T5.decoder_mixer": "'mixer'"}, "no causal form"),
    ({"T5.funnel_pools": 2}, "funnel_pools"),
    ({"T5.feedforward": "'moe'"}, "unknown feed-forward"),
    ({"T5.num_heads": 0}, "num_heads"),
])
def test_bad_shapes_and_names_are_config_errors(bindings, message):
    with pytest.raises(ConfigError, match=message):
        tiny_model("vanilla", **bindings)


class NoBiasCore(torch.nn.Module):
    """An attention core without a position-bias argument, like a linear-attention core."""

    def __init__(self, *, num_heads, head_dim):
        super().__init__()

    def forward(self, q, k, v, key_mask=None):
        return v


def test_encoder_attention_goes_through_the_gin_selected_core():
    gin.external_configurable(NoBiasCore, "NoBiasCore")
    with pytest.raises(ConfigError, match="takes no position bias"):
        tiny_model("vanilla", **{"MultiHeadAttention.attention": "@NoBiasCore"})
    model = tiny_model("vanilla", **{"MultiHeadAttention.attention": "@NoBiasCore", "T5.positions": "'sinusoidal'"})
    assert all(isinstance(block.mixer.core, NoBiasCore) for block in model.encoder)
    assert not any(isinstance(block.mixer.core, NoBiasCore) for block in model.decoder)  # decoder stays dense


CLOSED_FORM_ARCHS = {"vanilla", "universal"}  # T5 v1.0 blocks; sharing repeats a layer, same cost


@pytest.mark.parametrize("arch", ARCHS)
def test_flops_per_example_is_the_closed_form_where_it_applies_and_none_elsewhere(arch):
    model = tiny_model(arch).eval()
    inputs, targets = torch.randint(2, 40, (2, 13)), torch.randint(2, 40, (2, 6))
    closed = model.flops_per_example({"inputs": inputs, "targets": targets})
    if arch not in CLOSED_FORM_ARCHS:
        assert closed is None
        return
    assert closed == t5_forward_flops(input_length=13, target_length=6, vocab_size=40, d_model=32, d_ff=64,
                                      d_kv=8, num_heads=4, encoder_layers=2, decoder_layers=2)
    with torch.no_grad():
        measured = analysis.measured_flops(lambda: model(inputs, targets)) / len(inputs)
    assert abs(measured - closed) / closed < 0.05


def test_print_config_shows_the_closed_form_beside_the_measured_flops(tmp_path, capsys):
    from launch.run import main as run_main
    code = run_main(["--gin", os.path.join(REPO, "gin", "scaling", "t5_span.gin"), "--print-config",
                     "--workdir", str(tmp_path / "run")])
    assert code == 0
    found = re.search(r"# forward FLOPs per example \(measured\): ([\d.]+)M \(closed form: ([\d.]+)M\)",
                      capsys.readouterr().out)
    assert found, "the T5 closed form is missing from --print-config"
    # t5_span.gin: 64 words at 15% noise, mean span 3 -> 10 noise tokens in 3 spans, so inputs of
    # 64 - 10 + 3 sentinels + EOS = 58 tokens and targets of 10 + 3 + EOS = 14; shape cpu_d64_l2.
    expected = t5_forward_flops(input_length=58, target_length=14, vocab_size=128, d_model=64, d_ff=256,
                                d_kv=16, num_heads=4, encoder_layers=2, decoder_layers=2)
    measured, closed = (float(value) * 1e6 for value in found.groups())
    assert closed == pytest.approx(expected, abs=0.005e6)
    # The counter sees matmuls only (not CPU attention) and the closed form charges the cross
    # K/V projections per target token: both are approximations of the same cost.
    assert abs(measured - closed) / closed < 0.1
