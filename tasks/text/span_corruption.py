"""T5 span corruption (Raffel et al. 2020): drop random spans of a document, replace each by a
sentinel in the input, and ask for the sentinels followed by the dropped words as the target.

The corpus is a gin-selected source: the synthetic topic-Markov grammar (whose exact Bayes loss
is reported as `bayes_floor`, so `excess_loss` is the reducible part) or local text files.
Batch i is a pure function of (seed, split, i), like every generated task.
"""
from __future__ import annotations

from typing import Any

import gin
import numpy as np
import torch

from engine.data import generated_batches
from engine.errors import require
from engine.task import Task
from tasks.text.text_to_text import EOS_ID, WORD_OFFSET, sequence_loss


def span_counts(length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
    """(noise tokens, noise spans) for a document of `length` words, as T5 rounds them."""
    noise = min(max(int(round(length * noise_density)), 1), length - 1)
    spans = max(int(round(noise / mean_span_length)), 1)
    return noise, spans


def random_segmentation(rng: np.random.Generator, items: int, segments: int, count: int) -> np.ndarray:
    """`count` uniform random compositions of `items` into `segments` positive lengths."""
    keys = rng.random((count, items - 1))
    cuts = np.sort(np.argsort(keys, axis=1)[:, :segments - 1] + 1, axis=1)
    bounds = np.concatenate([np.zeros((count, 1), int), cuts, np.full((count, 1), items)], axis=1)
    return np.diff(bounds, axis=1)


def noise_masks(rng: np.random.Generator, count: int, length: int, noise_density: float,
                mean_span_length: float) -> np.ndarray:
    """(count, length) booleans: spans alternate kept, noise, starting kept and ending noise."""
    noise, spans = span_counts(length, noise_density, mean_span_length)
    noise_lengths = random_segmentation(rng, noise, spans, count)
    kept_lengths = random_segmentation(rng, length - noise, spans, count)
    interleaved = np.stack([kept_lengths, noise_lengths], axis=2).reshape(count, 2 * spans)
    is_noise = np.tile([False, True], spans)
    return np.stack([np.repeat(is_noise, row) for row in interleaved])


def sentinel(index: int, vocab_size: int) -> int:
    """The id of the `index`-th sentinel (0-based), counting down from the top of the vocabulary."""
    return vocab_size - 1 - index


def corrupt(words: np.ndarray, noise: np.ndarray, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (count, length) and their noise masks -> (inputs, targets), each ending with EOS."""
    inputs, targets = [], []
    for row, mask in zip(words, noise):
        starts = mask & ~np.concatenate([[False], mask[:-1]])
        ids = np.cumsum(starts) - 1  # which span each noise token belongs to
        sentinels = np.array([sentinel(i, vocab_size) for i in range(int(starts.sum()))], dtype=np.int64)
        source = np.where(starts, sentinels[ids.clip(0)], row)[~mask | starts]
        inputs.append(np.append(source, EOS_ID))
        target = np.empty(int(mask.sum() + starts.sum()), dtype=np.int64)
        where = np.flatnonzero(mask)
        offsets = np.arange(len(where)) + ids[where] + 1  # each span is preceded by its sentinel
        target[offsets] = row[where]
        target[offsets[starts[where]] - 1] = sentinels
        targets.append(np.append(target, EOS_ID))
    return np.stack(inputs), np.stack(targets)


def reconstruct(inputs: np.ndarray, targets: np.ndarray, vocab_size: int, num_sentinels: int) -> list[int]:
    """Put the target spans back over the sentinels of one example (the inverse of `corrupt`)."""
    first_sentinel = vocab_size - num_sentinels
    spans: dict[int, list[int]] = {}
    current = None
    for token in targets.tolist():
        if token == EOS_ID:
            break
        if token >= first_sentinel:
            current = token
            spans[current] = []
        else:
            spans[current].append(token)
    out: list[int] = []
    for token in inputs.tolist():
        if token == EOS_ID:
            break
        out.extend(spans[token] if token >= first_sentinel else [token])
    return out


@gin.configurable
class SpanCorruption(Task):
    """Span-corruption pre-training over `corpus` documents of `length` words."""

    def __init__(self, *, corpus: Any = gin.REQUIRED, vocab_size: int = gin.REQUIRED, length: int = 64,
                 noise_density: float = 0.15, mean_span_length: float = 3.0, eval_batches: int = 8) -> None:
        self.corpus = corpus() if isinstance(corpus, type) else corpus
        require(length >= 4, f"SpanCorruption.length must be >= 4, got {length}")
        require(0 < noise_density < 1, f"SpanCorruption.noise_density must be in (0, 1), got {noise_density}")
        require(mean_span_length >= 1, f"SpanCorruption.mean_span_length must be >= 1, got {mean_span_length}")
        self.length = length
        self.noise_density = noise_density
        self.mean_span_length = mean_span_length
        self.vocab_size = vocab_size
        self.eval_batches = eval_batches
        self.noise_tokens, self.spans = span_counts(length, noise_density, mean_span_length)
        words_end = WORD_OFFSET + self.corpus.num_words
        require(vocab_size - self.spans >= words_end,
                f"SpanCorruption.vocab_size = {vocab_size} leaves no room for {self.spans} sentinels above "
                f"the corpus's {self.corpus.num_words} words (+{WORD_OFFSET} special ids): use at least "
                f"{words_end + self.spans}")
        self.input_length = length - self.noise_tokens + self.spans + 1
        self.target_length = self.noise_tokens + self.spans + 1

    def _make(self, split: str):
        floor = hasattr(self.corpus, "span_nll") and split != "train"

        def make(rng: np.random.Generator, size: int, index: int) -> dict[str, np.ndarray]:
            words = self.corpus.sample(rng, size, self.length, split)["words"]
            noise = noise_masks(rng, size, self.length, self.noise_density, self.mean_span_length)
            inputs, targets = corrupt(words + WORD_OFFSET, noise, self.vocab_size)
            batch = {"inputs": inputs, "targets": targets}
            if floor:  # exact Bayes loss per example: only evaluation pays for it
                batch["bayes_nll"] = np.array([self.corpus.span_nll(w, m) for w, m in zip(words, noise)])
            return batch
        return make

    def batches(self, split, shard):
        return generated_batches(self._make(split), split, shard)

    def loss(self, model, batch):
        loss, metrics = sequence_loss(model(batch["inputs"], batch["targets"]), batch["targets"])
        metrics["neg_log_perplexity"] = -metrics["cross_entropy"]
        if "bayes_nll" in batch:
            floor = batch["bayes_nll"].float().mean() / self.target_length
            metrics["bayes_floor"] = floor
            metrics["excess_loss"] = metrics["cross_entropy"] - floor
        return loss, metrics

    def tokens(self, batch):
        return int(batch["inputs"].numel() + batch["targets"].numel())
