"""Each efficient attention equals the exact formula it approximates, in the cases where it must:
windows covering the sequence, one LSH bucket, k = L projections, closed forms, explicit masks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.layers.attention.bigbird import BigBirdAttention
from models.layers.attention.linear import LinearAttention, elu_feature_map
from models.layers.attention.linformer import LinformerAttention
from models.layers.attention.local import LocalAttention
from models.layers.attention.longformer import LongformerAttention
from models.layers.attention.masking import masked
from models.layers.attention.performer import PerformerAttention
from models.layers.attention.reformer import SELF_LOGIT, ReformerAttention
from models.layers.attention.sinkhorn import SinkhornAttention, sinkhorn
from models.layers.attention.sparse import SparseAttention
from models.layers.attention.synthesizer import SynthesizerAttention

HEADS, DIM, LENGTH = 2, 4, 13


def qkv(length: int = LENGTH, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, HEADS, length, DIM, generator=generator) for _ in range(3))
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, length - 4:] = False  # the second example is shorter
    return q, k, v, mask


def reference(q, k, v, allowed):
    """Textbook softmax attention restricted to `allowed` (batch or 1, heads or 1, Lq, Lk)."""
    logits = masked(q @ k.transpose(-1, -2) / DIM ** 0.5, allowed)
    return logits.softmax(dim=-1) @ v


def close_on_real(out, expected, mask):
    """Compare at real query positions (padded queries are free to differ)."""
    real = mask[:, None, :, None].expand_as(out)
    return torch.allclose(out[real], expected[real], atol=1e-5)


def padding(mask):
    return mask[:, None, None, :]


@pytest.mark.parametrize("core", [
    LocalAttention(num_heads=HEADS, head_dim=DIM, block_size=LENGTH),
    LongformerAttention(num_heads=HEADS, head_dim=DIM, window=2 * LENGTH, global_tokens=0),
    LongformerAttention(num_heads=HEADS, head_dim=DIM, window=2 * LENGTH, global_tokens=2),
    BigBirdAttention(num_heads=HEADS, head_dim=DIM, max_len=LENGTH, block_size=LENGTH),
    BigBirdAttention(num_heads=HEADS, head_dim=DIM, max_len=LENGTH, block_size=3, num_random_blocks=1),
    SparseAttention(num_heads=HEADS, head_dim=DIM, block_size=LENGTH, summary_size=1),
    SinkhornAttention(num_heads=HEADS, head_dim=DIM, max_len=LENGTH, block_size=LENGTH),
], ids=["local", "longformer", "longformer-global", "bigbird-one-block", "bigbird-all-blocks", "sparse", "sinkhorn"])
def test_patterns_covering_the_sequence_equal_dense_attention(core):
    """Block = L (or, for BigBird with 5 blocks, sliding + global + 1 random block = every block)."""
    q, k, v, mask = qkv()
    assert close_on_real(core.eval()(q, k, v, mask), reference(q, k, v, padding(mask)), mask)


def positions(length: int = LENGTH):
    return torch.arange(length)[:, None], torch.arange(length)[None, :]


def test_local_attention_is_block_diagonal_over_contiguous_blocks():
    q, k, v, mask = qkv()
    i, j = positions()
    allowed = (i // 4 == j // 4) & padding(mask)
    out = LocalAttention(num_heads=HEADS, head_dim=DIM, block_size=4)(q, k, v, mask)
    assert close_on_real(out, reference(q, k, v, allowed), mask)


def test_strided_local_attention_groups_tokens_a_stride_apart():
    """LRA's reshape: with L = 12 and block 4, group j holds tokens j, j + 3, j + 6, j + 9."""
    q, k, v, _ = qkv(length=12)
    i, j = positions(12)
    out = LocalAttention(num_heads=HEADS, head_dim=DIM, block_size=4, strided=True)(q, k, v)
    assert torch.allclose(out, reference(q, k, v, i % 3 == j % 3), atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_sparse_attention_is_the_papers_fixed_pattern(causal):
    """A(1): same block of 4; A(2): the last 2 tokens of every block; plus global token 0 (non-causal)."""
    q, k, v, mask = qkv()
    i, j = positions()
    allowed = (i // 4 == j // 4) | (j % 4 >= 2)
    if causal:
        allowed = allowed & (j <= i)
    else:
        allowed = allowed | (i == 0) | (j == 0)
    core = SparseAttention(num_heads=HEADS, head_dim=DIM, block_size=4, summary_size=2, causal=causal,
                           global_tokens=0 if causal else 1)
    assert close_on_real(core(q, k, v, mask), reference(q, k, v, allowed & padding(mask)), mask)


@pytest.mark.parametrize("window", [3, 4, 7])
def test_longformer_is_a_band_plus_global_tokens(window):
    q, k, v, mask = qkv()
    i, j = positions()
    band = (j - i >= -(window - window // 2)) & (j - i <= window // 2)
    allowed = (band | (i < 2) | (j < 2)) & padding(mask)
    core = LongformerAttention(num_heads=HEADS, head_dim=DIM, window=window, global_tokens=2)
    assert close_on_real(core(q, k, v, mask), reference(q, k, v, allowed), mask)


def test_bigbird_without_random_blocks_is_sliding_plus_global_blocks():
    """Blocks of 2 over 14 tokens (7 blocks); the shorter example's last real block is block 4."""
    q, k, v, mask = qkv(length=14)
    core = BigBirdAttention(num_heads=HEADS, head_dim=DIM, max_len=14, block_size=2, num_random_blocks=0)
    i, j = positions(14)
    expected = []
    for example, last in enumerate([6, 4]):
        bi, bj = i // 2, j // 2
        allowed = (bi - bj).abs() <= 1
        allowed = allowed | (bj == 0) | (bj == last) | (bi == 0) | (bi == last)
        expected.append(reference(q[example:example + 1], k[example:example + 1], v[example:example + 1],
                                  allowed & padding(mask[example:example + 1])))
    assert close_on_real(core(q, k, v, mask), torch.cat(expected), mask)


def test_bigbird_random_blocks_are_fixed_distinct_and_outside_the_fixed_pattern():
    core = BigBirdAttention(num_heads=HEADS, head_dim=DIM, max_len=64, block_size=4, num_random_blocks=3)
    index, valid, last = core.key_blocks(torch.ones(1, 16, dtype=torch.bool))
    random = index[..., 5:]
    rows = torch.arange(16)[None, None, :, None]
    assert valid[..., 5:].all()
    assert ((random - rows).abs() > 1).all() and (random != 0).all() and (random != 15).all()
    assert all(len(set(r.tolist())) == 3 for r in random.reshape(-1, 3))
    assert torch.equal(core.key_blocks(torch.ones(1, 16, dtype=torch.bool))[0], index)  # deterministic


def dense_shared_qk(q, v, mask):
    """Reformer's attention without hashing: unit-norm keys = queries, self only as a last resort."""
    logits = masked(q @ F.normalize(q, dim=-1).transpose(-1, -2) / DIM ** 0.5, padding(mask))
    self_pair = torch.eye(q.shape[2], dtype=torch.bool) & padding(mask)
    return torch.where(self_pair, torch.tensor(SELF_LOGIT), logits).softmax(dim=-1) @ v


@pytest.mark.parametrize("n_hashes", [1, 3])
def test_reformer_with_one_bucket_equals_dense_shared_qk_attention(n_hashes):
    """One bucket and one chunk: every round sees every key; duplicates across rounds count once."""
    q, _, v, mask = qkv()
    core = ReformerAttention(num_heads=HEADS, head_dim=DIM, n_hashes=n_hashes, n_buckets=1, chunk_len=16).eval()
    assert close_on_real(core(q, None, v, mask), dense_shared_qk(q, v, mask), mask)


def test_reformer_rounds_with_identical_hashes_equal_one_round():
    q, _, v, mask = qkv(length=24)
    one = ReformerAttention(num_heads=HEADS, head_dim=DIM, n_hashes=1, n_buckets=4, chunk_len=4).eval()
    two = ReformerAttention(num_heads=HEADS, head_dim=DIM, n_hashes=2, n_buckets=4, chunk_len=4).eval()
    two.rotations.copy_(one.rotations.expand(2, -1, -1))
    assert close_on_real(two(q, None, v, mask), one(q, None, v, mask), mask)


def test_reformer_redraws_its_hash_only_while_training():
    core = ReformerAttention(num_heads=HEADS, head_dim=DIM, n_buckets=4, chunk_len=4)
    q, _, v, _ = qkv()
    before = core.rotations.clone()
    core.eval()(q, None, v)
    assert torch.equal(core.rotations, before)
    core.train()(q, None, v)
    assert not torch.equal(core.rotations, before)


def test_linformer_with_k_equal_to_length_and_identity_projection_equals_dense():
    """Unpadded: a padded row still projects to a (zero) key row with logit 0, as in the paper."""
    q, k, v, _ = qkv()
    mask = torch.ones(2, LENGTH, dtype=torch.bool)
    core = LinformerAttention(num_heads=HEADS, head_dim=DIM, max_len=LENGTH - 1, low_rank=LENGTH)
    with torch.no_grad():
        core.key_projection.copy_(torch.eye(LENGTH))
        core.value_projection.copy_(torch.eye(LENGTH))
    assert close_on_real(core(q, k, v, mask), reference(q, k, v, padding(mask)), mask)


def test_linear_attention_equals_its_quadratic_form():
    q, k, v, mask = qkv()
    scores = elu_feature_map(q) @ elu_feature_map(k).transpose(-1, -2) * padding(mask)
    expected = scores @ v / (scores.sum(dim=-1, keepdim=True) + 1e-6)
    assert torch.allclose(LinearAttention(num_heads=HEADS, head_dim=DIM)(q, k, v, mask), expected, atol=1e-5)


def test_deterministic_relu_performer_equals_its_quadratic_form():
    q, k, v, mask = qkv()
    phi = lambda x: F.relu(x) + 1e-3  # noqa: E731
    scores = phi(q) @ phi(k).transpose(-1, -2) * padding(mask)
    core = PerformerAttention(num_heads=HEADS, head_dim=DIM, kernel="relu", random_features=False)
    assert torch.allclose(core(q, k, v, mask), scores @ v / (scores.sum(dim=-1, keepdim=True) + 1e-6), atol=1e-5)


def test_performer_error_to_softmax_falls_as_features_grow():
    q, k, v, mask = qkv(length=32)
    q, k = q * 0.5, k * 0.5
    exact = reference(q, k, v, padding(mask))
    errors = []
    for features in (8, 64, 512):
        torch.manual_seed(0)
        trials = [(PerformerAttention(num_heads=HEADS, head_dim=DIM, num_features=features)(q, k, v, mask) - exact)
                  .abs().mean().item() for _ in range(4)]
        errors.append(sum(trials) / len(trials))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.3 * errors[0]


def optimizer_step():
    """Any torch optimizer's step ticks the Performer's training-step clock."""
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0).step()


def test_performer_redraws_features_every_interval_of_optimizer_steps_in_training_only():
    core = PerformerAttention(num_heads=HEADS, head_dim=DIM, num_features=8, redraw_interval=2)
    q, k, v, _ = qkv()
    first = core.projection.clone()
    core.eval()(q, k, v), optimizer_step(), core.eval()(q, k, v), optimizer_step(), core(q, k, v)
    assert torch.equal(core.projection, first)
    core.train()
    core(q, k, v), core(q, k, v)  # calls within one step (recurrent steps, micro-batches) share it
    optimizer_step()
    core(q, k, v)
    assert torch.equal(core.projection, first)
    optimizer_step()
    core(q, k, v)  # the third step starts a new interval
    assert not torch.equal(core.projection, first)
    assert int(core.training_steps) == 3


def test_performer_in_a_weight_shared_block_backpropagates_through_every_call():
    """A recurrent block calls the core several times per forward: one projection, and the one
    autograd saved is never overwritten (the in-place redraw broke this backward)."""
    core = PerformerAttention(num_heads=HEADS, head_dim=DIM, num_features=8).train()
    weight = torch.nn.Parameter(torch.eye(DIM))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    q, k, v, mask = qkv()
    for _ in range(3):
        h = q
        for _ in range(3):
            h = core(h @ weight, k, v, mask)
        h.pow(2).sum().backward()
        optimizer.step()
    assert int(core.training_steps) == 3


def test_performer_projections_are_a_pure_function_of_seed_and_step_so_resume_and_ranks_agree():
    torch.manual_seed(5)
    trained = PerformerAttention(num_heads=HEADS, head_dim=DIM, num_features=8).train()
    q, k, v, _ = qkv()
    for _ in range(2):
        trained(q, k, v), optimizer_step()
    saved = {name: t.clone() for name, t in trained.state_dict().items()}
    trained(q, k, v)
    after = trained.projection.clone()
    torch.manual_seed(99)  # the restored core is built from another RNG state, then loads the checkpoint
    restored = PerformerAttention(num_heads=HEADS, head_dim=DIM, num_features=8).train()
    restored.load_state_dict(saved)
    assert torch.equal(restored(q, k, v), trained(q, k, v)) and torch.equal(restored.projection, after)
    torch.manual_seed(5)  # another rank: same seed before building, so the same features at every step
    other_rank = PerformerAttention(num_heads=HEADS, head_dim=DIM, num_features=8).train()
    torch.manual_seed(1234)  # ranks draw dropout from different streams; the features do not care
    for _ in range(3):
        other_rank(q, k, v), optimizer_step()
    assert torch.equal(other_rank.projection, after)


def test_orthogonal_features_are_orthogonal_within_a_block():
    core = PerformerAttention(num_heads=HEADS, head_dim=DIM, num_features=DIM)
    directions = F.normalize(core.projection, dim=-1)
    assert torch.allclose(directions @ directions.T, torch.eye(DIM), atol=1e-5)


def test_sinkhorn_normalisation_is_doubly_stochastic_over_real_blocks():
    logits = torch.randn(2, 1, 5, 5)
    real = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    allowed = real[:, None, None, :] & real[:, None, :, None]
    perm = sinkhorn(logits, allowed, iterations=50)
    assert torch.allclose(perm[0].sum(-1), torch.ones(1, 5), atol=1e-3)
    assert torch.allclose(perm[0].sum(-2), torch.ones(1, 5), atol=1e-3)
    assert torch.allclose(perm[1, :, :3, :3].sum(-1), torch.ones(1, 3), atol=1e-3)
    assert torch.allclose(perm[1, :, :3, :3].sum(-2), torch.ones(1, 3), atol=1e-3)
    assert perm[1, :, :3, 3:].abs().max() == 0


def test_sinkhorn_with_a_one_hot_sort_attends_to_its_block_and_the_chosen_one():
    """A sort net that picks block 0 for every block: block n sees its own keys and block 0's."""
    q, k, v, _ = qkv(length=12)
    core = SinkhornAttention(num_heads=HEADS, head_dim=DIM, max_len=12, block_size=4)
    with torch.no_grad():
        core.sort_net.weight.zero_()
        core.sort_net.bias.copy_(torch.tensor([1e4] + [0.0] * (core.max_blocks - 1)))
    i, j = positions(12)
    blocks = [reference(q[..., 4 * n:4 * n + 4, :], torch.cat([k[..., 4 * n:4 * n + 4, :], k[..., :4, :]], 2),
                        torch.cat([v[..., 4 * n:4 * n + 4, :], v[..., :4, :]], 2), torch.ones(1, 1, 4, 8, dtype=torch.bool))
              for n in range(3)]
    assert torch.allclose(core(q, k, v), torch.cat(blocks, dim=2), atol=1e-5)


def test_synthesizer_with_zero_table_and_dot_product_equals_dense():
    q, k, v, mask = qkv()
    core = SynthesizerAttention(num_heads=HEADS, head_dim=DIM, max_len=LENGTH, dot_product=True)
    with torch.no_grad():
        core.logits.zero_()
    assert close_on_real(core(q, k, v, mask), reference(q, k, v, padding(mask)), mask)
