"""A synthetic corpus with a known entropy floor: each document draws a latent topic, then its
words from that topic's first-order Markov chain (a fixed random "grammar", seeded separately
from the run so every run reads the same language).

Because the source is known, the Bayes-optimal loss of span corruption can be computed exactly
(`span_nll`): the topic and the unseen span lengths are summed out with matrix powers and a
small dynamic programme. That is the floor no model can beat, so scaling fits can use the
reducible loss.
"""
from __future__ import annotations

import math

import gin
import numpy as np

from engine.errors import require


@gin.configurable
class TopicMarkovSource:
    """`num_topics` Markov chains over `num_words` words; rows drawn from Dirichlet(concentration)."""

    def __init__(self, *, num_words: int = 64, num_topics: int = 8, concentration: float = 0.1,
                 seed: int = 1234) -> None:
        require(num_words >= 2, f"TopicMarkovSource.num_words must be >= 2, got {num_words}")
        require(num_topics >= 1, f"TopicMarkovSource.num_topics must be >= 1, got {num_topics}")
        require(concentration > 0, f"TopicMarkovSource.concentration must be > 0, got {concentration}")
        self.num_words = num_words
        self.num_topics = num_topics
        rng = np.random.default_rng(seed)
        self.initial = rng.dirichlet(np.full(num_words, concentration), size=num_topics)         # (T, W)
        self.transitions = rng.dirichlet(np.full(num_words, concentration), size=(num_topics, num_words))
        self._cumulative_initial = np.cumsum(self.initial, axis=-1)
        self._cumulative = np.cumsum(self.transitions, axis=-1)                                  # (T, W, W)
        self._powers: list[np.ndarray] = [np.broadcast_to(np.eye(num_words), self.transitions.shape)]

    # --- sampling -------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, count: int, length: int, split: str = "train",
               topics: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """`count` documents of `length` words: {'words': (count, length) in [0, W), 'topic': (count,)}."""
        if topics is None:
            topics = rng.integers(0, self.num_topics, size=count)
        words = np.empty((count, length), dtype=np.int64)
        uniforms = rng.random((count, length))
        words[:, 0] = self._draw(self._cumulative_initial[topics], uniforms[:, 0])
        for position in range(1, length):
            rows = self._cumulative[topics, words[:, position - 1]]
            words[:, position] = self._draw(rows, uniforms[:, position])
        return {"words": words, "topic": np.asarray(topics, dtype=np.int64)}

    @staticmethod
    def _draw(cumulative: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        index = (uniforms[:, None] > cumulative).sum(axis=1)
        return np.minimum(index, cumulative.shape[1] - 1)  # guards against rounding in the last bin

    # --- exact likelihoods ----------------------------------------------------------------------
    def entropy_rate(self) -> float:
        """Nats per word of the chain given its topic (stationary average): a sanity reference."""
        total = 0.0
        for t in range(self.num_topics):
            values, vectors = np.linalg.eig(self.transitions[t].T)
            stationary = np.real(vectors[:, np.argmin(np.abs(values - 1))])
            stationary = stationary / stationary.sum()
            rows = -(self.transitions[t] * np.log(np.clip(self.transitions[t], 1e-300, None))).sum(axis=1)
            total += float(stationary @ rows)
        return total / self.num_topics

    def power(self, steps: int) -> np.ndarray:
        """Transition matrices raised to `steps`, per topic (T, W, W), cached."""
        while len(self._powers) <= steps:
            self._powers.append(self._powers[-1] @ self.transitions)
        return self._powers[steps]

    def log_likelihood(self, words: np.ndarray) -> np.ndarray:
        """log P(words | topic) for each topic: (T,) for one document (L,), (T, N) for N documents (N, L)."""
        logp = np.log(self.initial[:, words[..., 0]])
        if words.shape[-1] > 1:
            logp = logp + np.log(self.transitions[:, words[..., :-1], words[..., 1:]]).sum(axis=-1)
        return logp

    def topic_bayes_accuracy(self, length: int, documents: int = 20_000, seed: int = 0) -> float:
        """Accuracy of the exact posterior's best guess of the topic of a `length`-word document
        (uniform prior), estimated on `documents` sampled documents: the ceiling of any topic
        classifier, so a downstream table can say how much headroom its models leave."""
        sample = self.sample(np.random.default_rng(seed), documents, length)
        return float((self.log_likelihood(sample["words"]).argmax(axis=0) == sample["topic"]).mean())

    def span_nll(self, words: np.ndarray, noise: np.ndarray) -> float:
        """Exact -log P(noise words and span lengths | visible words, counts of spans and noise).

        `noise` marks the corrupted positions of one document: spans alternate visible, noise,
        starting visible and ending noise (T5's layout), and the span lengths are a uniform
        random composition of the noise count, independent of the words.
        """
        starts = np.flatnonzero(np.diff(np.concatenate([[0], noise.astype(np.int8)])) == 1)
        ends = np.flatnonzero(np.diff(np.concatenate([noise.astype(np.int8), [0]])) == -1) + 1
        total_noise = int(noise.sum())
        log_prior = -math.log(self.num_topics)
        joint = np.logaddexp.reduce(log_prior + self.log_likelihood(words))

        # P(visible | topic) = initial x transitions inside visible runs x a gap factor per
        # inner noise span, summed over every composition of the noise count into spans.
        visible = ~noise.astype(bool)
        inside = visible[:-1] & visible[1:]
        topics = np.arange(self.num_topics)
        base = np.log(self.initial[:, words[0]]) + np.log(
            self.transitions[topics[:, None], words[None, :-1][:, inside], words[None, 1:][:, inside]]).sum(axis=1)
        # ways[t, m]: summed gap probability with m noise words used by the inner spans so far.
        ways = np.zeros((self.num_topics, total_noise + 1))
        ways[:, 0] = 1.0
        for start, end in zip(starts[:-1], ends[:-1]):
            left, right = words[start - 1], words[end]
            gap = np.stack([self.power(length + 1)[:, left, right] for length in range(1, total_noise + 1)], axis=1)
            updated = np.zeros_like(ways)
            for length in range(1, total_noise + 1):
                updated[:, length:] += ways[:, :-length] * gap[:, length - 1:length]
            ways = updated
        # The last span (at the end of the document) takes what is left: at least one word.
        marginal = ways[:, :total_noise].sum(axis=1)
        visible_log = np.logaddexp.reduce(log_prior + base + np.log(np.clip(marginal, 1e-300, None)))
        # Every composition is equally likely, so its probability cancels between the two.
        return float(visible_log - joint)
