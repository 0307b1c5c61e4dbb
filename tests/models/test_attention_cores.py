"""Every attention core behind MultiHeadAttention: shapes, padding, gradients, gin files, config errors."""
from __future__ import annotations

import glob
import os

import pytest
import torch

from engine.errors import ConfigError
from models.layers.attention.bigbird import BigBirdAttention
from models.layers.attention.dense import DenseAttention
from models.layers.attention.linear import LinearAttention
from models.layers.attention.linformer import LinformerAttention
from models.layers.attention.local import LocalAttention
from models.layers.attention.longformer import LongformerAttention
from models.layers.attention.multihead import MultiHeadAttention
from models.layers.attention.naive import NaiveSoftmaxAttention
from models.layers.attention.performer import PerformerAttention
from models.layers.attention.reformer import ReformerAttention
from models.layers.attention.sinkhorn import SinkhornAttention
from models.layers.attention.sparse import SparseAttention
from models.layers.attention.synthesizer import SynthesizerAttention
from models.transformer import TransformerClassifier
from tests.helpers import REPO

MAX_LEN = 24


def partial(cls, **settings):
    return lambda **shape: cls(**shape, **settings)


# Small blocks and windows so that every core is genuinely sparse at these lengths.
CORES = {
    "naive": partial(NaiveSoftmaxAttention),
    "local": partial(LocalAttention, block_size=4),
    "sparse": partial(SparseAttention, block_size=4, summary_size=2),
    "longformer": partial(LongformerAttention, window=4),
    "linformer": partial(LinformerAttention, max_len=MAX_LEN, low_rank=5),
    "reformer": partial(ReformerAttention, n_hashes=2, n_buckets=4, chunk_len=4),
    "sinkhorn": partial(SinkhornAttention, max_len=MAX_LEN, block_size=4, sinkhorn_iterations=3),
    "synthesizer": partial(SynthesizerAttention, max_len=MAX_LEN, dot_product=True),
    "synthesizer_dense": partial(SynthesizerAttention, max_len=MAX_LEN, mode="dense"),
    "synthesizer_factorized": partial(SynthesizerAttention, max_len=MAX_LEN, mode="factorized_random", factor_rank=3),
    "bigbird": partial(BigBirdAttention, max_len=MAX_LEN, block_size=3, num_random_blocks=1),
    "linear": partial(LinearAttention),
    "performer": partial(PerformerAttention, num_features=16),
    "performer_relu": partial(PerformerAttention, kernel="relu", random_features=False),
}


def layer(name: str, d_model: int = 16, heads: int = 2) -> MultiHeadAttention:
    torch.manual_seed(0)
    return MultiHeadAttention(d_model, heads, attention=CORES[name])


@pytest.mark.parametrize("name", sorted(CORES))
def test_real_positions_ignore_appended_padding(name):
    attention = layer(name).eval()
    torch.manual_seed(1)
    x = torch.randn(2, 11, 16)
    padded = torch.cat([x, torch.randn(2, 9, 16)], dim=1)
    mask = torch.cat([torch.ones(2, 11), torch.zeros(2, 9)], dim=1).bool()
    out = attention(x)
    assert out.shape == x.shape
    assert torch.allclose(attention(padded, mask)[:, :11], out, atol=1e-5)


@pytest.mark.parametrize("name", sorted(CORES))
def test_ragged_batches_match_each_example_alone(name):
    """A padded batch of two lengths gives each example what it gets unpadded on its own."""
    attention = layer(name).eval()
    torch.manual_seed(2)
    long, short = torch.randn(1, 13, 16), torch.randn(1, 7, 16)
    batch = torch.cat([long, torch.cat([short, torch.zeros(1, 6, 16)], dim=1)])
    mask = torch.arange(13)[None, :] < torch.tensor([[13], [7]])
    out = attention(batch, mask)
    assert torch.allclose(out[:1], attention(long), atol=1e-5)
    assert torch.allclose(out[1:, :7], attention(short), atol=1e-5)
    assert torch.isfinite(out).all()  # padded queries too: fully masked rows must not produce NaN


@pytest.mark.parametrize("name", sorted(CORES))
def test_gradients_reach_every_parameter(name):
    attention = layer(name).train()
    x = torch.randn(3, 10, 16, requires_grad=True)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 6:] = False
    attention(x, mask).pow(2).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for parameter_name, parameter in attention.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name


def test_cores_that_read_no_keys_get_no_key_projection():
    """Unused projections would be unused parameters, which DDP rejects."""
    assert layer("reformer").key is None and layer("reformer").query is not None
    random_only = MultiHeadAttention(16, 2, attention=partial(SynthesizerAttention, max_len=MAX_LEN))
    assert random_only.query is None and random_only.key is None
    assert layer("synthesizer_dense").query is not None and layer("synthesizer_dense").key is None
    assert layer("synthesizer").key is not None
    with pytest.raises(ConfigError, match="reads no keys, so it cannot do the cross-attention"):
        MultiHeadAttention(16, 2, attention=partial(ReformerAttention), d_context=16)  # same width: still refused


def test_random_synthesizer_weights_are_the_learned_table_alone():
    core = SynthesizerAttention(num_heads=2, head_dim=4, max_len=MAX_LEN).eval()
    assert core.logits.shape == (2, MAX_LEN + 1, MAX_LEN + 1)  # one slot for a prepended CLS token
    v = torch.randn(3, 2, 7, 4)
    expected = core.logits[:, :7, :7].softmax(dim=-1) @ v
    assert torch.allclose(core(None, None, v), expected, atol=1e-6)


GIN_FILES = sorted(glob.glob(os.path.join(REPO, "gin", "lra", "attention", "*.gin")))
EXPECTED_CORE = {"dense": DenseAttention, "local": LocalAttention, "sparse": SparseAttention,
                 "longformer": LongformerAttention, "linformer": LinformerAttention, "reformer": ReformerAttention,
                 "sinkhorn": SinkhornAttention, "synthesizer": SynthesizerAttention, "bigbird": BigBirdAttention,
                 "linear": LinearAttention, "performer": PerformerAttention, "performer_relu": PerformerAttention}


def test_every_variant_has_a_gin_file():
    assert {os.path.basename(f)[:-4] for f in GIN_FILES} == set(EXPECTED_CORE)


@pytest.mark.parametrize("path", GIN_FILES, ids=lambda p: os.path.basename(p))
def test_gin_file_builds_a_classifier_that_trains(path):
    """Each variant file, composed with a SEQ_LEN binding, swaps the core of every encoder layer."""
    from engine import config
    config.parse([path], ["SEQ_LEN = 20"])
    torch.manual_seed(0)
    model = TransformerClassifier(vocab_size=8, num_classes=2, max_len=20, d_model=16, num_heads=2, num_layers=2)
    name = os.path.basename(path)[:-4]
    assert all(isinstance(block.attention.core, EXPECTED_CORE[name]) for block in model.blocks)
    tokens = torch.randint(0, 8, (4, 20))
    labels = tokens[:, 0] % 2  # decided by the first token: reachable from CLS by every pattern
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(tokens)["logits"], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("build, message", [
    (lambda: LocalAttention(num_heads=2, head_dim=4, block_size=0), "block_size"),
    (lambda: SparseAttention(num_heads=2, head_dim=4, block_size=4, summary_size=5), "summary_size"),
    (lambda: SparseAttention(num_heads=2, head_dim=4, causal=True), "global_tokens = 0"),
    (lambda: LongformerAttention(num_heads=2, head_dim=4, window=0), "window"),
    (lambda: LinformerAttention(num_heads=2, head_dim=4, max_len=8, low_rank=0), "low_rank"),
    (lambda: ReformerAttention(num_heads=2, head_dim=4, n_buckets=3), "even"),
    (lambda: SinkhornAttention(num_heads=2, head_dim=4, max_len=8, temperature=0.0), "temperature"),
    (lambda: SynthesizerAttention(num_heads=2, head_dim=4, max_len=8, mode="mixed"), "mode"),
    (lambda: BigBirdAttention(num_heads=2, head_dim=4, max_len=8, num_random_blocks=-1), "num_random_blocks"),
    (lambda: PerformerAttention(num_heads=2, head_dim=4, kernel="cosine"), "kernel"),
    (lambda: PerformerAttention(num_heads=2, head_dim=4, random_features=False), "random_features"),
])
def test_bad_settings_raise_config_errors(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


@pytest.mark.parametrize("name", ["linformer", "sinkhorn", "synthesizer", "bigbird"])
def test_sequences_longer_than_max_len_are_a_config_error(name):
    attention = layer(name)
    with pytest.raises(ConfigError, match="max_len"):
        attention(torch.randn(1, MAX_LEN + 8, 16))
