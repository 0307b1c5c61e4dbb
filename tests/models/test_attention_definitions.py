"""Each registered attention core against its paper's definition: a hand-computed value or an
independent few-line reference that uses nothing from the core's module but its parameters.

The other attention tests compare a core with its own quadratic form, which moves with the core
(swap linear attention's elu(x) + 1 for elu(x) + 0.5 and they still pass); these do not.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.layers.attention.bigbird import BigBirdAttention
from models.layers.attention.dense import DenseAttention
from models.layers.attention.linear import LinearAttention
from models.layers.attention.linformer import LinformerAttention
from models.layers.attention.local import LocalAttention
from models.layers.attention.longformer import LongformerAttention
from models.layers.attention.naive import NaiveSoftmaxAttention
from models.layers.attention.performer import PerformerAttention
from models.layers.attention.reformer import ReformerAttention
from models.layers.attention.sinkhorn import SinkhornAttention
from models.layers.attention.sparse import SparseAttention
from models.layers.attention.synthesizer import SynthesizerAttention
from tests.composition.recipes import attention_cores

H, D, L = 2, 4, 12


def qkv(length: int = L, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, H, length, D, generator=g) for _ in range(3)]


def softmax_attention(q, k, v, allowed=None):
    """softmax(Q K^T / sqrt(d) + mask) V, written out."""
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    return torch.softmax(logits, dim=-1) @ v


def grid(length: int = L):
    return torch.arange(length)[:, None], torch.arange(length)[None, :]


def hand_computed(core) -> None:
    """d = 1: query 1 against keys 0 and ln 3 gives weights 1/4, 3/4, so values 1 and 5 give 4;
    query 0 weighs them equally (3); masking the second key leaves its value 1."""
    q = torch.tensor([1.0, 0.0]).view(1, 1, 2, 1)
    k = torch.tensor([0.0, math.log(3.0)]).view(1, 1, 2, 1)
    v = torch.tensor([1.0, 5.0]).view(1, 1, 2, 1)
    assert torch.allclose(core(q, k, v).flatten(), torch.tensor([4.0, 3.0]), atol=1e-5)
    assert torch.allclose(core(q, k, v, torch.tensor([[True, False]])).flatten(), torch.tensor([1.0, 1.0]))


def dense():
    hand_computed(DenseAttention(num_heads=1, head_dim=1))


def naive():
    hand_computed(NaiveSoftmaxAttention(num_heads=1, head_dim=1))


def linear():
    """Katharopoulos et al. eq. 6 with phi(x) = elu(x) + 1."""
    q, k, v = qkv()
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    weights = phi_q @ phi_k.transpose(-1, -2)
    expected = weights @ v / weights.sum(-1, keepdim=True)
    assert torch.allclose(LinearAttention(num_heads=H, head_dim=D)(q, k, v), expected, atol=1e-4)


def performer():
    """FAVOR+ (Choromanski et al. lemma 1): phi(x) = exp(w^T x - |x|^2 / 2) / sqrt(m) on x / d^(1/4),
    D^-1 phi(Q) phi(K)^T V; and the generalized ReLU kernel phi(x) = ReLU(w^T x) + eps."""
    q, k, v = qkv()
    core = PerformerAttention(num_heads=H, head_dim=D, num_features=16).eval()
    w = core.projection

    def phi(x):
        x = x / D ** 0.25
        return torch.exp(x @ w.T - (x ** 2).sum(-1, keepdim=True) / 2) / math.sqrt(16)

    weights = phi(q) @ phi(k).transpose(-1, -2)
    assert torch.allclose(core(q, k, v), weights @ v / weights.sum(-1, keepdim=True), atol=1e-4)
    relu = PerformerAttention(num_heads=H, head_dim=D, kernel="relu", num_features=16, relu_eps=1e-3).eval()
    weights = (F.relu(q @ relu.projection.T) + 1e-3) @ (F.relu(k @ relu.projection.T) + 1e-3).transpose(-1, -2)
    assert torch.allclose(relu(q, k, v), weights @ v / weights.sum(-1, keepdim=True), atol=1e-4)


def local():
    """Full softmax within contiguous blocks of 4."""
    q, k, v = qkv()
    i, j = grid()
    expected = softmax_attention(q, k, v, i // 4 == j // 4)
    assert torch.allclose(LocalAttention(num_heads=H, head_dim=D, block_size=4)(q, k, v), expected, atol=1e-5)


def sparse():
    """Child et al.'s fixed pattern, stride l = 4, c = 1: A(1) = same block, A(2) = the last token
    of every block; causal."""
    q, k, v = qkv()
    i, j = grid()
    allowed = ((i // 4 == j // 4) | (j % 4 == 3)) & (j <= i)
    core = SparseAttention(num_heads=H, head_dim=D, block_size=4, summary_size=1, causal=True, global_tokens=0)
    assert torch.allclose(core(q, k, v), softmax_attention(q, k, v, allowed), atol=1e-5)


def longformer():
    """Beltagy et al.: a window of w = 4 around each token (2 left, 2 right), token 0 global."""
    q, k, v = qkv()
    i, j = grid()
    allowed = ((i - j).abs() <= 2) | (i == 0) | (j == 0)
    core = LongformerAttention(num_heads=H, head_dim=D, window=4, global_tokens=1)
    assert torch.allclose(core(q, k, v), softmax_attention(q, k, v, allowed), atol=1e-5)


def bigbird():
    """Zaheer et al. (ITC): blocks of 2; each query block sees its neighbour blocks and the first and
    last blocks, which see everything (no random blocks here: those are tested for their draw)."""
    q, k, v = qkv()
    i, j = grid()
    bi, bj, last = i // 2, j // 2, L // 2 - 1
    allowed = ((bi - bj).abs() <= 1) | (bj == 0) | (bj == last) | (bi == 0) | (bi == last)
    core = BigBirdAttention(num_heads=H, head_dim=D, max_len=L, block_size=2, num_random_blocks=0)
    assert torch.allclose(core(q, k, v), softmax_attention(q, k, v, allowed), atol=1e-5)


def linformer():
    """Wang et al. eq. 7: softmax(Q (E K)^T / sqrt(d)) (F V), E and F of shape (k, n)."""
    q, k, v = qkv()
    core = LinformerAttention(num_heads=H, head_dim=D, max_len=L, low_rank=3)
    e, f = core.key_projection[:L].T, core.value_projection[:L].T
    expected = softmax_attention(q, e @ k, f @ v)
    assert torch.allclose(core(q, k, v), expected, atol=1e-5)


def reformer():
    """Kitaev et al.: h(x) = argmax([xR; -xR]); with one bucket, shared-QK attention whose keys
    are the unit-normalised queries and where a token attends to itself only as a last resort."""
    q, _, v = qkv()
    core = ReformerAttention(num_heads=H, head_dim=D, n_hashes=2, n_buckets=4, chunk_len=4).eval()
    rotated = torch.einsum("bhld,rdk->bhrlk", q, core.rotations)
    assert torch.equal(core.hash(q), torch.cat([rotated, -rotated], -1).argmax(-1))
    one = ReformerAttention(num_heads=H, head_dim=D, n_buckets=1, chunk_len=L).eval()
    logits = q @ (q / q.norm(dim=-1, keepdim=True)).transpose(-1, -2) / math.sqrt(D)
    logits = logits.masked_fill(torch.eye(L, dtype=torch.bool), -1e5)
    assert torch.allclose(one(q, None, v), logits.softmax(-1) @ v, atol=1e-5)


def sinkhorn():
    """Tay et al. (2020): block n attends to its own keys and to sum_m P[n, m] K_m, P the sort
    net's soft permutation of the blocks (here softmax rows) computed from each block's summed keys."""
    q, k, v = qkv()
    core = SinkhornAttention(num_heads=H, head_dim=D, max_len=L, block_size=4)
    blocks = lambda x: x.reshape(2, H, 3, 4, D)  # noqa: E731
    qb, kb, vb = blocks(q), blocks(k), blocks(v)
    perm = core.sort_net(kb.sum(-2))[..., :3].softmax(-1)  # (b, h, n, n)
    sorted_k, sorted_v = torch.einsum("bhnm,bhmkd->bhnkd", perm, kb), torch.einsum("bhnm,bhmkd->bhnkd", perm, vb)
    expected = softmax_attention(qb, torch.cat([kb, sorted_k], -2), torch.cat([vb, sorted_v], -2)).reshape(q.shape)
    assert torch.allclose(core(q, k, v), expected, atol=1e-5)


def synthesizer():
    """Tay et al. (2021), Dense Synthesizer: B_i = W2 relu(W1 x_i + b1) + b2, Y = softmax(B) V."""
    q, _, v = qkv()
    core = SynthesizerAttention(num_heads=H, head_dim=D, max_len=L, mode="dense")
    with torch.no_grad():
        core.hidden_bias.normal_(), core.logit_bias.normal_()
    hidden = F.relu(torch.einsum("bhld,hde->bhle", q, core.hidden) + core.hidden_bias)
    logits = torch.einsum("bhle,hen->bhln", hidden, core.to_logits[..., :L]) + core.logit_bias[..., :L]
    assert torch.allclose(core(q, None, v), logits.softmax(-1) @ v, atol=1e-5)


DEFINITIONS = {"DenseAttention": dense, "NaiveSoftmaxAttention": naive, "LinearAttention": linear,
               "PerformerAttention": performer, "LocalAttention": local, "SparseAttention": sparse,
               "LongformerAttention": longformer, "BigBirdAttention": bigbird, "LinformerAttention": linformer,
               "ReformerAttention": reformer, "SinkhornAttention": sinkhorn, "SynthesizerAttention": synthesizer}


@pytest.mark.parametrize("core", sorted(attention_cores()))
def test_core_matches_its_papers_definition(core):
    """Every registered core has a check here: a core added later must bring one."""
    assert core in DEFINITIONS, f"{core} has no check against its paper's definition"
    torch.manual_seed(0)
    DEFINITIONS[core]()
