"""Pointer-value retrieval: the original vector PVR (Zhang et al. 2021) and C-PVR (Hyper-UT).

PVR: x[0] is a pointer p into ten values x[1..10]; the label aggregates the window of m + 1
values from x[p + 1] (complexity = window size m). C-PVR: starting at position 0, follow
x[cur] while it moves strictly forward; the label is the value at the last position reached
(complexity = number of hops). Both are generated on the fly, a pure function of
(seed, split, batch index), and sliced per rank.
"""
from __future__ import annotations

import itertools

import gin
import numpy as np
import torch

from engine.data import generated_batches
from engine.errors import ConfigError, require_int, require_interval
from tasks.common.levels import LeveledClassificationTask, balanced_levels

# --- C-PVR ---------------------------------------------------------------------------------


def cpvr_examples(rng: np.random.Generator, hops: np.ndarray, length: int) -> dict[str, np.ndarray]:
    """One C-PVR example per entry of `hops`: tokens (n, length), label, and the chain (n, max hops).

    The chain p_1 < ... < p_M is M distinct positions from 1..length-1; x[0] = p_1,
    x[p_k] = p_{k+1}, and the terminal value y <= p_M stops the walk. Other positions are
    uniform filler that the walk never visits.
    """
    n = len(hops)
    most = int(hops.max())
    order = np.argsort(rng.random((n, length - 1)), axis=1)[:, :most] + 1
    order[np.arange(most)[None, :] >= hops[:, None]] = length  # padding sorts last
    chain = np.sort(order, axis=1)
    tokens = rng.integers(0, length, size=(n, length))
    rows = np.arange(n)
    tokens[:, 0] = chain[:, 0]
    for k in range(most - 1):
        active = k + 1 < hops
        tokens[rows[active], chain[active, k]] = chain[active, k + 1]
    last = chain[rows, hops - 1]
    labels = np.minimum((rng.random(n) * (last + 1)).astype(np.int64), last)
    tokens[rows, last] = labels
    chain[chain == length] = -1
    return {"tokens": tokens.astype(np.int64), "label": labels, "level": hops.astype(np.int64), "chain": chain}


def pointer_chain(tokens: np.ndarray) -> list[int]:
    """The positions the C-PVR walk visits: 0, p_1, ..., p_M (the last holds the label)."""
    chain, following = [0], int(tokens[0])
    while following > chain[-1]:
        chain.append(following)
        following = int(tokens[following])
    return chain


def shortcut_answers(tokens: np.ndarray) -> np.ndarray:
    """A C-PVR answer that does not follow the chain, for each row of (n, L) tokens.

    It reads the value at the right-most position that an earlier position points to and that
    does not itself point forward: two attention steps whatever the hop count. It is right more
    often for more hops (the chain's end moves right and fewer filler decoys remain), and on
    short sequences it solves most long chains (results/cpvr_shortcuts).
    """
    n, length = tokens.shape
    pointed_to = np.zeros((n, length), dtype=bool)
    for source in range(length):
        target = tokens[:, source]
        forward = target > source
        pointed_to[np.flatnonzero(forward), target[forward]] = True
    candidates = pointed_to & (tokens <= np.arange(length)[None, :])
    rightmost = np.where(candidates.any(axis=1), length - 1 - np.argmax(candidates[:, ::-1], axis=1), 0)
    return tokens[np.arange(n), rightmost]


def num_hops(tokens: np.ndarray) -> int:
    """The C-PVR verifier: how many forward moves the pointer walk from position 0 makes."""
    return len(pointer_chain(tokens)) - 1


@gin.configurable
class CPVR(LeveledClassificationTask):
    """C-PVR: multi-hop forward pointer chasing over `length` tokens; complexity = hops."""

    level_name = "hops"

    def __init__(self, *, length: int = 16, train_hops: tuple[int, int] = (1, 4),
                 eval_hops: tuple[int, int] = (1, 8), eval_examples_per_level: int = 256,
                 curriculum_batches: int = 0) -> None:
        """`curriculum_batches` > 0 opens the training hops one at a time: batch i draws hops
        from train_hops[0] up to train_hops[0] + i // curriculum_batches (capped)."""
        if length < 2:
            raise ConfigError(f"CPVR.length must be >= 2, got {length}")
        self.curriculum_batches = require_int(curriculum_batches, "CPVR.curriculum_batches", low=0)
        self.length = length
        self.train_levels = require_interval(train_hops, "CPVR.train_hops", low=1, high=length - 1)
        self.eval_levels = require_interval(eval_hops, "CPVR.eval_hops", low=1, high=length - 1)
        self.eval_examples_per_level = eval_examples_per_level
        self.vocab_size = length
        self.num_classes = length

    def _make(self, split: str):
        def make(rng, size, index):
            if split == "train":
                lo, hi = self.train_levels
                if self.curriculum_batches:
                    hi = min(hi, lo + index // self.curriculum_batches)
                hops = rng.integers(lo, hi + 1, size=size)
            else:
                hops = balanced_levels(self.eval_levels, size, index)
            examples = cpvr_examples(rng, hops, self.length)
            del examples["chain"]  # variable width across batches; the verifier rebuilds it
            return examples
        return make

    def batches(self, split, shard):
        return generated_batches(self._make(split), split, shard)

    def tokens(self, batch):
        return int(batch["tokens"].numel())

    def chain(self, tokens):
        return pointer_chain(tokens)

    def example_groups(self, batch):
        """'no_shortcut': the examples that `shortcut_answers` gets wrong, where only following
        the chain gives the label (accuracy_no_shortcut/hops_k)."""
        tokens = batch["tokens"].cpu().numpy()
        wrong = shortcut_answers(tokens) != batch["label"].cpu().numpy()
        return {"no_shortcut": torch.from_numpy(wrong).to(batch["label"].device)}


# --- vector PVR ----------------------------------------------------------------------------

AGGREGATIONS = ("mod_sum", "min", "max", "median", "maj_vote")


def aggregate(windows: np.ndarray, how: str) -> np.ndarray:
    """Aggregate each row of `windows` (n, m + 1) of digits into one digit."""
    if how == "mod_sum":
        return windows.sum(axis=1) % 10
    if how == "min":
        return windows.min(axis=1)
    if how == "max":
        return windows.max(axis=1)
    if how == "median":  # the lower median, so the label stays a digit
        return np.sort(windows, axis=1)[:, (windows.shape[1] - 1) // 2]
    if how == "maj_vote":  # the most frequent digit, the smallest on ties
        counts = np.apply_along_axis(np.bincount, 1, windows, minlength=10)
        return counts.argmax(axis=1)
    raise ConfigError(f"PVR.aggregation must be one of {AGGREGATIONS}, got {how!r}")


def held_out_windows(window: int, holdout: int) -> np.ndarray:
    """The first `holdout` permutations of (0..m): removed from training, the adversarial test set."""
    perms = list(itertools.islice(itertools.permutations(range(window + 1)), holdout))
    return np.array(perms, dtype=np.int64).reshape(len(perms), window + 1)


def pvr_examples(rng: np.random.Generator, windows: np.ndarray, aggregation: str,
                 held_out: np.ndarray | None = None, adversarial: bool = False) -> dict[str, np.ndarray]:
    """Vector PVR examples, one per entry of `windows` (each m in 0..9).

    With `held_out` (all rows share one window size), training rows never show a held-out
    window and adversarial rows show only held-out ones.
    """
    n = len(windows)
    digits = rng.integers(0, 10, size=(n, 11))
    pointers = (rng.random(n) * (10 - windows)).astype(np.int64)
    digits[:, 0] = pointers
    labels = np.zeros(n, dtype=np.int64)
    for m in np.unique(windows):
        rows = np.flatnonzero(windows == m)
        columns = pointers[rows, None] + 1 + np.arange(m + 1)[None, :]
        if held_out is not None and len(held_out):
            if adversarial:
                digits[rows[:, None], columns] = held_out[rng.integers(0, len(held_out), size=len(rows))]
            else:
                for _ in range(100):
                    bad = (digits[rows[:, None], columns][:, None, :] == held_out[None]).all(-1).any(-1)
                    if not bad.any():
                        break
                    digits[rows[bad][:, None], columns[bad]] = rng.integers(0, 10, size=(int(bad.sum()), m + 1))
        labels[rows] = aggregate(digits[rows[:, None], columns], aggregation)
    return {"digits": digits.astype(np.int64), "label": labels, "level": windows.astype(np.int64)}


@gin.configurable
class PVR(LeveledClassificationTask):
    """Vector PVR: a pointer digit and ten values; complexity = window size m.

    When training or evaluation spans more than one window size, the input starts with a
    window-size token (10 + m) so one model can be asked any complexity; this is our extension,
    the original trains one model per m. Split 'holdout' is the adversarial test set.
    """

    level_name = "window"

    def __init__(self, *, train_windows: tuple[int, int] = (0, 0), eval_windows: tuple[int, int] | None = None,
                 aggregation: str = "mod_sum", holdout: int = 0, eval_examples_per_level: int = 512) -> None:
        self.train_levels = require_interval(train_windows, "PVR.train_windows", low=0, high=9)
        self.eval_levels = require_interval(eval_windows or train_windows, "PVR.eval_windows", low=0, high=9)
        aggregate(np.zeros((1, 1), dtype=np.int64), aggregation)  # validates the name
        self.aggregation = aggregation
        self.eval_examples_per_level = eval_examples_per_level
        self.window_token = len({*self.train_levels, *self.eval_levels}) > 1
        self.held_out = None
        if holdout:
            if self.train_levels[0] != self.train_levels[1] or self.window_token:
                raise ConfigError("PVR.holdout needs a single window size (train_windows = eval_windows = (m, m))")
            m = self.train_levels[0]
            import math
            if not 0 < holdout <= math.factorial(m + 1) or m == 0:
                raise ConfigError(f"PVR.holdout must be in 1..{math.factorial(m + 1)} for window {m} (m >= 1)")
            self.held_out = held_out_windows(m, holdout)
        self.vocab_size = 20
        self.num_classes = 10

    def _make(self, split: str):
        def make(rng, size, index):
            if split == "train":
                lo, hi = self.train_levels
                windows = rng.integers(lo, hi + 1, size=size)
            else:
                windows = balanced_levels(self.eval_levels, size, index)
            examples = pvr_examples(rng, windows, self.aggregation, self.held_out,
                                    adversarial=split == "holdout")
            digits = examples.pop("digits")
            if self.window_token:
                digits = np.concatenate([10 + windows[:, None], digits], axis=1)
            examples["tokens"] = digits
            return examples
        return make

    def batches(self, split, shard):
        if split == "holdout" and self.held_out is None:
            raise ConfigError("split 'holdout' needs PVR.holdout > 0")
        return generated_batches(self._make(split), split, shard)

    def tokens(self, batch):
        return int(batch["tokens"].numel())
