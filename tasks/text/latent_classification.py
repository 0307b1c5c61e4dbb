"""Downstream tasks read off the synthetic corpus's latent structure, posed text-to-text
(the target is one label word then EOS), for fine-tuning a span-corruption model.

- topic:    which of the source's topics generated the document;
- reversed: whether the document is read backwards (needs the chains' direction);
- spliced:  whether the second half comes from a different topic than the first.
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

QUESTIONS = ("topic", "reversed", "spliced")


def label_token(label: np.ndarray) -> np.ndarray:
    """Class k is answered with word k (as T5 answers with words)."""
    return label + WORD_OFFSET


@gin.configurable
class LatentStructure(Task):
    """Classification of `corpus` documents by `question`; metric `accuracy` on the label word."""

    def __init__(self, *, corpus: Any = gin.REQUIRED, question: str = "topic", length: int = 64,
                 eval_batches: int = 8) -> None:
        self.corpus = corpus() if isinstance(corpus, type) else corpus
        require(question in QUESTIONS, f"LatentStructure.question must be one of {QUESTIONS}, got {question!r}")
        require(hasattr(self.corpus, "num_topics"), "LatentStructure needs a corpus with latent topics "
                                                    "(TopicMarkovSource)")
        require(length >= 2, f"LatentStructure.length must be >= 2, got {length}")
        self.question = question
        self.length = length
        self.eval_batches = eval_batches
        self.num_classes = self.corpus.num_topics if question == "topic" else 2
        require(self.num_classes <= self.corpus.num_words, "more classes than words to answer with")

    def examples(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(words (size, length), labels (size,)) for this task's question."""
        if self.question == "topic":
            sample = self.corpus.sample(rng, size, self.length)
            return sample["words"], sample["topic"]
        labels = rng.integers(0, 2, size=size)
        words = self.corpus.sample(rng, size, self.length)["words"]
        if self.question == "reversed":
            return np.where(labels[:, None] == 1, words[:, ::-1], words), labels
        # Spliced: the second half is drawn from another topic; unspliced documents are also
        # joined from two samples (of one topic), so the seam alone gives nothing away.
        first = self.corpus.sample(rng, size, self.length)
        topics = first["topic"]
        other = (topics + rng.integers(1, max(self.corpus.num_topics, 2), size=size)) % self.corpus.num_topics
        second = self.corpus.sample(rng, size, self.length, topics=np.where(labels == 1, other, topics))["words"]
        half = self.length // 2
        return np.concatenate([first["words"][:, :half], second[:, half:]], axis=1), labels

    def batches(self, split, shard):
        def make(rng, size, index):
            words, labels = self.examples(rng, size)
            inputs = np.concatenate([words + WORD_OFFSET, np.full((size, 1), EOS_ID)], axis=1)
            targets = np.stack([label_token(labels), np.full(size, EOS_ID)], axis=1)
            return {"inputs": inputs, "targets": targets, "label": labels}
        return generated_batches(make, split, shard)

    def loss(self, model, batch):
        output = model(batch["inputs"], batch["targets"])
        loss, metrics = sequence_loss(output, batch["targets"])
        # Accuracy among the label words only, as a classifier would be scored.
        logits = output["logits"][:, 0, WORD_OFFSET:WORD_OFFSET + self.num_classes]
        metrics["accuracy"] = (logits.argmax(-1) == batch["label"]).float().mean()
        return loss, metrics

    def tokens(self, batch):
        return int(batch["inputs"].numel() + batch["targets"].numel())
