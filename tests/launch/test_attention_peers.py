"""`launch/bench.py attention --peers`: a missing package skips its row and the run still succeeds;
for every installed package, both layers build and take a forward and backward pass; where the
package is set up to compute exactly what ours does, it does."""
from __future__ import annotations

import json
import os
import sys

import pytest
import torch

from launch.benchmarks import _record, attention
from launch.benchmarks.attention import PEERS, build_pair, missing

PEERS_BY_NAME = {peer.variant: peer for peer in PEERS}
TINY = ["--lengths", "64", "--dim", "32", "--heads", "4", "--steps", "2", "--warmup", "1", "--threads", "1"]


@pytest.fixture(autouse=True)
def leave_the_process_alone(monkeypatch):
    """The benchmark retunes glibc's malloc and torch's thread count for the whole process."""
    monkeypatch.setattr(attention, "allocator", lambda measuring: None)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def installed(name: str):
    peer = PEERS_BY_NAME[name]
    return pytest.param(peer, id=name, marks=pytest.mark.skipif(missing(peer) is not None,
                                                                reason=f"{peer.package} is not installed"))


def test_a_missing_package_skips_its_row_and_the_run_succeeds(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "linear_attention_transformer", None)  # import now fails
    assert missing(PEERS_BY_NAME["linear"]) is not None
    assert attention.main(["--peers", "--variants", "naive,linear", *TINY, "--out", str(tmp_path)]) == 0
    with open(tmp_path / "attention_peers.json") as handle:
        record = json.load(handle)
    rows = record["tables"]["peers"]["rows"]
    assert [row["mechanism"] for row in rows] == ["softmax (naive)"]
    assert rows[0]["ours_ms_64"] > 0 and rows[0]["theirs_ms_64"] > 0 and len(rows[0]["ours_ms_samples_64"]) == 2
    assert "linear-attention-transformer" in record["figures"]["skipped"]


def test_a_run_with_a_skipped_peer_never_replaces_the_committed_record(monkeypatch, tmp_path):
    monkeypatch.setattr(_record, "BENCH_DIR", str(tmp_path))
    monkeypatch.setattr(attention, "BENCH_DIR", str(tmp_path))

    def record(argv):
        return attention.AttentionRecord("launch.benchmarks.attention", attention.options(), argv)

    assert record([]).path() == str(tmp_path / "attention.json")
    assert record(["--peers"]).path() == str(tmp_path / "attention_peers.json")
    assert record(["--peers", "--lengths", "64"]).path() is None
    incomplete = record(["--peers"])
    incomplete.incomplete = "1 peer(s) skipped"
    assert incomplete.path() is None and incomplete.save({"batch": 2}) is None
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize("peer", [installed(peer.variant) for peer in PEERS])
def test_both_layers_build_and_take_a_training_pass(peer):
    pair = build_pair(peer, length=64, dim=32, heads=4, batch=2)
    padded = pair.x.shape[1]
    assert padded % peer.multiple == 0 and padded >= 64
    for which, layer in (("ours", pair.ours), ("theirs", pair.theirs)):
        out = layer(pair.x, pair.mask)
        assert out.shape == (2, padded, 32), which
        assert torch.isfinite(out[:, :64]).all(), which
        out.backward(pair.grad)
        grads = [p.grad for p in layer.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), which
        assert any(g.abs().sum() > 0 for g in grads), which
        assert pair.step(which) > 0


def copy_projections(ours, into):
    """Our layer's q/k/v/out weights into a package layer laid out as separate Linear modules."""
    with torch.no_grad():
        for mine, theirs in zip((ours.query, ours.key, ours.value, ours.out), into):
            theirs.weight.copy_(mine.weight)
            theirs.bias.copy_(mine.bias)


def test_the_naive_reference_computes_what_ours_does():
    pair = build_pair(PEERS_BY_NAME["naive"], length=64, dim=32, heads=4)
    mine, theirs = pair.ours.layer, pair.theirs.layer
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([mine.query.weight, mine.key.weight, mine.value.weight]))
        theirs.in_proj_bias.copy_(torch.cat([mine.query.bias, mine.key.bias, mine.value.bias]))
        theirs.out_proj.weight.copy_(mine.out.weight)
        theirs.out_proj.bias.copy_(mine.out.bias)
    outputs = pair.outputs()
    torch.testing.assert_close(outputs["ours"], outputs["theirs"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("peer", [installed("local")])
def test_the_local_package_is_set_up_to_compute_what_ours_does(peer):
    """Windows of 50 without look-around, padding masked: our LocalAttention, 64 tokens = 2 blocks."""
    pair = build_pair(peer, length=64, dim=32, heads=4)
    pair.theirs.layer.load_state_dict(pair.ours.layer.state_dict())
    outputs = pair.outputs()
    torch.testing.assert_close(outputs["ours"], outputs["theirs"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("peer", [installed("linformer")])
def test_the_linformer_package_is_set_up_to_compute_what_ours_does(peer):
    """With our shared E copied into both of its length projections, the package equals ours."""
    pair = build_pair(peer, length=64, dim=32, heads=4)
    mine, theirs = pair.ours.layer, pair.theirs.layer
    copy_projections(mine, (theirs.to_q, theirs.to_k, theirs.to_v, theirs.to_out))
    with torch.no_grad():
        theirs.proj_k.copy_(mine.core.key_projection[:64])
        theirs.proj_v.copy_(mine.core.key_projection[:64])
    outputs = pair.outputs()
    torch.testing.assert_close(outputs["ours"], outputs["theirs"], rtol=1e-4, atol=1e-5)
