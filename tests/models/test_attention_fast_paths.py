"""The speed-ups in the attention cores change how they compute, not what: the hand-written elu + 1
backward is the true derivative, and the cores that scale, mask or lay out their inputs in place
work on their own copies, never on the caller's tensors, whatever their memory layout."""
from __future__ import annotations

import pytest
import torch

from models.layers.attention.linear import LinearAttention, elu_feature_map, kernel_attention
from models.layers.attention.linformer import LinformerAttention
from models.layers.attention.performer import PerformerAttention
from models.layers.attention.reformer import ReformerAttention
from models.layers.attention.sinkhorn import SinkhornAttention


def test_elu_feature_map_gradient_is_exact():
    x = torch.randn(2, 3, 7, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(elu_feature_map, (x,))
    torch.testing.assert_close(elu_feature_map(x), torch.nn.functional.elu(x) + 1)


def test_kernel_attention_gradient_is_exact_with_a_padding_mask():
    q, k = (torch.rand(2, 2, 6, 4, dtype=torch.double, requires_grad=True) + 0.1 for _ in range(2))
    v = torch.randn(2, 2, 6, 3, dtype=torch.double, requires_grad=True)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    assert torch.autograd.gradcheck(lambda q, k, v: kernel_attention(q, k, v, mask, 1e-6), (q, k, v))


CORES = {
    "linear": lambda: LinearAttention(num_heads=2, head_dim=8),
    "sinkhorn": lambda: SinkhornAttention(num_heads=2, head_dim=8, max_len=40, block_size=5),
    "linformer": lambda: LinformerAttention(num_heads=2, head_dim=8, max_len=40, low_rank=4, share_kv=True),
    "performer": lambda: PerformerAttention(num_heads=2, head_dim=8, num_features=16),
    "reformer": lambda: ReformerAttention(num_heads=2, head_dim=8, n_hashes=2, n_buckets=4, chunk_len=4),
}


@pytest.mark.parametrize("length", [20, 23])  # a multiple of every block and chunk above, and none
@pytest.mark.parametrize("layout", ["contiguous", "heads_split_view"])
@pytest.mark.parametrize("name", sorted(CORES))
def test_cores_leave_their_inputs_untouched(name, layout, length):
    torch.manual_seed(0)
    core = CORES[name]().train()
    if layout == "contiguous":
        leaves = [torch.randn(2, 2, length, 8, requires_grad=True) for _ in range(3)]
        q, k, v = leaves
    else:  # as MultiHeadAttention hands them over: a (batch, length, heads * dim) tensor's view
        leaves = [torch.randn(2, length, 16, requires_grad=True) for _ in range(3)]
        q, k, v = (t.view(2, length, 2, 8).transpose(1, 2) for t in leaves)
    before = [t.detach().clone() for t in leaves]
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, 17:] = False
    out = core(q, None if getattr(core, "uses_keys", True) is False else k, v, mask)
    out.sum().backward()
    for leaf, original in zip(leaves, before):
        assert torch.equal(leaf.detach(), original)
    assert torch.isfinite(out).all()
