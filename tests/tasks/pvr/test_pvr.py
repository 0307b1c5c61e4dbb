"""PVR and C-PVR generators: deterministic per (seed, step), labels checked independently."""
from __future__ import annotations

import itertools
import statistics
from collections import Counter

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.data import Shard
from tasks.pvr.vector import CPVR, PVR, num_hops


def first(task, split, **shard):
    return next(iter(task.batches(split, Shard(**{"batch_size": 64, **shard}))))


def walk(tokens):
    """An independent C-PVR checker: follow forward pointers from 0; return (hops, value)."""
    position, hops = 0, 0
    while tokens[position] > position:
        position = tokens[position]
        hops += 1
    return hops, tokens[position]


def test_cpvr_labels_and_hops_agree_with_an_independent_walk():
    task = CPVR(length=16, train_hops=(1, 6), eval_hops=(1, 15))
    for split in ("train", "eval"):
        for index in range(20):
            batch = first(task, split, start=index, batch_size=128)
            for tokens, label, level in zip(batch["tokens"].tolist(), batch["label"].tolist(), batch["level"].tolist()):
                hops, value = walk(tokens)
                assert (hops, value) == (level, label)
                assert num_hops(np.array(tokens)) == level
                assert all(0 <= t < 16 for t in tokens)


def test_cpvr_train_hops_stay_in_range_and_eval_is_balanced():
    task = CPVR(length=16, train_hops=(2, 4), eval_hops=(1, 8))
    train = torch.cat([first(task, "train", start=i)["level"] for i in range(10)])
    assert set(train.tolist()) == {2, 3, 4}
    evaluation = torch.cat([first(task, "eval", start=i)["level"] for i in range(4)])
    assert Counter(evaluation.tolist()) == {k: 32 for k in range(1, 9)}


def test_cpvr_labels_are_spread_over_classes():
    task = CPVR(length=16, train_hops=(1, 4))
    labels = torch.cat([first(task, "train", start=i, batch_size=512)["label"] for i in range(8)])
    counts = np.bincount(labels.numpy(), minlength=16) / len(labels)
    assert (counts > 0).all()  # every class occurs
    assert counts.max() < 3 / 16  # the majority class is under 3x chance
    entropy = -(counts * np.log(counts)).sum() / np.log(16)
    assert entropy > 0.9


def test_batches_are_a_pure_function_of_seed_split_and_step():
    task = CPVR(length=16)
    a = first(task, "train", start=7, seed=3)
    b = first(task, "train", start=7, seed=3)
    assert torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["label"], b["label"])
    assert not torch.equal(a["tokens"], first(task, "train", start=8, seed=3)["tokens"])
    assert not torch.equal(a["tokens"], first(task, "train", start=7, seed=4)["tokens"])
    assert not torch.equal(a["tokens"], first(task, "eval", start=7, seed=3)["tokens"])
    iterator = task.batches("train", Shard(batch_size=64, seed=3, start=5))
    next(iterator), next(iterator)
    assert torch.equal(next(iterator)["tokens"], a["tokens"])  # batch 7 from a cursor at 5


def test_two_ranks_together_see_the_one_rank_batch():
    task = CPVR(length=16)
    whole = first(task, "train", start=2)
    halves = [first(task, "train", start=2, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat([h["tokens"] for h in halves]), whole["tokens"])


AGGREGATE = {
    "mod_sum": lambda w: sum(w) % 10,
    "min": min,
    "max": max,
    "median": statistics.median_low,
    "maj_vote": lambda w: min(v for v, c in Counter(w).items() if c == max(Counter(w).values())),
}


@pytest.mark.parametrize("aggregation", sorted(AGGREGATE))
def test_pvr_labels_agree_with_an_independent_aggregator(aggregation):
    task = PVR(train_windows=(0, 3), aggregation=aggregation)
    batch = first(task, "train", batch_size=256)
    for tokens, label, window in zip(batch["tokens"].tolist(), batch["label"].tolist(), batch["level"].tolist()):
        assert tokens[0] == 10 + window  # the window-size token
        pointer, values = tokens[1], tokens[2:]
        assert 0 <= pointer <= 9 - window
        assert label == AGGREGATE[aggregation](values[pointer:pointer + window + 1])


def test_pvr_single_window_has_no_window_token():
    batch = first(PVR(train_windows=(2, 2)), "train")
    assert batch["tokens"].shape == (64, 11)
    assert int(batch["tokens"].max()) <= 9


def test_pvr_holdout_windows_never_in_training_and_only_in_adversarial_split():
    task = PVR(train_windows=(2, 2), holdout=3)
    held = {tuple(p) for p in itertools.islice(itertools.permutations(range(3)), 3)}
    def windows(batch):
        return [tuple(t[1 + t[0]:1 + t[0] + 3]) for t in batch["tokens"].tolist()]
    train = [w for i in range(30) for w in windows(first(task, "train", start=i, batch_size=512))]
    assert not held & set(train)
    adversarial = windows(first(task, "holdout", batch_size=256))
    assert set(adversarial) <= held and len(set(adversarial)) == 3


def test_pvr_rejects_impossible_settings():
    with pytest.raises(ConfigError):
        PVR(train_windows=(0, 12))
    with pytest.raises(ConfigError):
        PVR(train_windows=(0, 2), holdout=1)
    with pytest.raises(ConfigError):
        PVR(aggregation="mean")
    with pytest.raises(ConfigError):
        CPVR(length=8, eval_hops=(1, 8))
