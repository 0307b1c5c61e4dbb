"""Subject-verb agreement on a generated English-like language with attractor nouns.

Each example is a sentence prefix that stops right before the main verb; the label is the
number (singular 0 / plural 1) that verb must take, i.e. the number of its subject's head noun.
Between the subject and the verb sit modifiers, each bringing one noun: prepositional phrases
("near the cabinets") and object relative clauses ("that the men like", whose own verb agrees
with *its* noun). Attractors are intervening nouns of the other number (Linzen et al. 2016);
other intervening nouns only add distance. Optional leading clauses ("the boys say that ...")
move the subject away from the start. The level is the number of attractors: training sees
few and short prefixes, evaluation more and longer (Abnar et al. 2020, section 5).
"""
from __future__ import annotations

from typing import Any

import gin
import numpy as np
import torch

from engine.data import Shard, device_of, generated_batches
from engine.errors import ConfigError, require_interval, require_number
from tasks.common.calibration import evaluate_calibration
from tasks.common.levels import LeveledClassificationTask, balanced_levels

SINGULAR, PLURAL = 0, 1
NOUNS = (("key", "keys"), ("cabinet", "cabinets"), ("boy", "boys"), ("girl", "girls"), ("dog", "dogs"),
         ("cat", "cats"), ("table", "tables"), ("book", "books"), ("author", "authors"), ("pilot", "pilots"),
         ("farmer", "farmers"), ("doctor", "doctors"), ("window", "windows"), ("door", "doors"), ("car", "cars"),
         ("teacher", "teachers"), ("student", "students"), ("picture", "pictures"), ("friend", "friends"),
         ("bird", "birds"))
#: transitive verbs of relative clauses, (singular, plural) forms
RELATIVE_VERBS = (("likes", "like"), ("sees", "see"), ("knows", "know"), ("finds", "find"), ("helps", "help"),
                  ("watches", "watch"))
#: verbs that take a clause ("... says that ..."), (singular, plural) forms
CLAUSE_VERBS = (("says", "say"), ("thinks", "think"), ("hopes", "hope"))
PREPOSITIONS = ("near", "behind", "beside", "under", "above", "with")
ADJECTIVES = ("old", "new", "small", "big", "red", "quiet")
PAD = "<pad>"
VOCABULARY = (PAD, "the", "that", *ADJECTIVES, *PREPOSITIONS,
              *(form for pair in NOUNS + RELATIVE_VERBS + CLAUSE_VERBS for form in pair))
WORD_ID = {word: i for i, word in enumerate(VOCABULARY)}

# Longest pieces, for the fixed padded length: "the ADJ NOUN VERB that", "the ADJ NOUN",
# "that the ADJ NOUN VERB".
_CLAUSE, _SUBJECT, _MODIFIER = 5, 3, 5


class Sentence:
    """Builds one prefix word by word from a generator (a pure function of it)."""

    def __init__(self, rng: np.random.Generator, adjective_rate: float) -> None:
        self.rng, self.adjective_rate, self.words = rng, adjective_rate, []

    def pick(self, options: tuple) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def noun_phrase(self, number: int) -> None:
        self.words.append("the")
        if self.rng.random() < self.adjective_rate:
            self.words.append(self.pick(ADJECTIVES))
        self.words.append(self.pick(NOUNS)[number])

    def leading_clause(self) -> None:
        number = int(self.rng.integers(2))
        self.noun_phrase(number)
        self.words += [self.pick(CLAUSE_VERBS)[number], "that"]

    def modifier(self, number: int, relative: bool) -> None:
        if relative:
            self.words.append("that")
            self.noun_phrase(number)
            self.words.append(self.pick(RELATIVE_VERBS)[number])
        else:
            self.words.append(self.pick(PREPOSITIONS))
            self.noun_phrase(number)


def agreement_prefix(rng: np.random.Generator, *, attractors: int, distractors: int, clauses: int,
                     adjective_rate: float = 0.3, relative_rate: float = 0.5) -> tuple[list[str], int]:
    """(words, label): a prefix with exactly `attractors` intervening nouns of the other number
    and `distractors` of the same number, in random order, after `clauses` leading clauses."""
    sentence = Sentence(rng, adjective_rate)
    for _ in range(clauses):
        sentence.leading_clause()
    subject = int(rng.integers(2))
    sentence.noun_phrase(subject)
    numbers = [1 - subject] * attractors + [subject] * distractors
    for number in rng.permutation(numbers) if numbers else []:
        sentence.modifier(int(number), relative=bool(rng.random() < relative_rate))
    return sentence.words, subject


def draw(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    """A uniform integer in the inclusive range `bounds`."""
    return int(rng.integers(bounds[0], bounds[1] + 1))


def encode(words: list[str], length: int) -> np.ndarray:
    ids = np.zeros(length, dtype=np.int64)
    ids[:len(words)] = [WORD_ID[w] for w in words]
    return ids


def decode(ids: np.ndarray) -> list[str]:
    return [VOCABULARY[int(i)] for i in ids if int(i) != WORD_ID[PAD]]


@gin.configurable
class SubjectVerbAgreement(LeveledClassificationTask):
    """Predict the main verb's number from the prefix before it; accuracy per attractor count.

    Ranges are inclusive (low, high): `*_attractors` (the level), `*_distractors` (intervening
    nouns of the subject's number), `*_clauses` (leading "the N says that" clauses). Each split
    is padded to the longest prefix its ranges allow (`lengths[part]`); `max_length` is the
    longest of all, and `example_batch` is padded to it, so a model whose positions cannot
    hold the evaluation prefixes fails before training starts rather than at the first eval.
    """

    level_name = "attractors"

    def __init__(self, *, train_attractors: tuple[int, int] = (0, 1), eval_attractors: tuple[int, int] = (0, 4),
                 train_distractors: tuple[int, int] = (0, 1), eval_distractors: tuple[int, int] = (0, 2),
                 train_clauses: tuple[int, int] = (0, 1), eval_clauses: tuple[int, int] = (0, 1),
                 adjective_rate: float = 0.3, relative_rate: float = 0.5, eval_examples_per_level: int = 256,
                 calibration_bins: int = 10) -> None:
        def levels(name: str, value: tuple[int, int], highest: int) -> tuple[int, int]:
            return require_interval(value, f"SubjectVerbAgreement.{name}", low=0, high=highest)

        self.train_levels = levels("train_attractors", train_attractors, 16)
        self.eval_levels = levels("eval_attractors", eval_attractors, 16)
        self.distractors = {"train": levels("train_distractors", train_distractors, 16),
                            "eval": levels("eval_distractors", eval_distractors, 16)}
        self.clauses = {"train": levels("train_clauses", train_clauses, 8),
                        "eval": levels("eval_clauses", eval_clauses, 8)}
        for name, rate in (("adjective_rate", adjective_rate), ("relative_rate", relative_rate)):
            require_number(rate, f"SubjectVerbAgreement.{name}", low=0, high=1, hint="it is a probability")
        self.adjective_rate, self.relative_rate = float(adjective_rate), float(relative_rate)
        self.eval_examples_per_level = eval_examples_per_level
        self.calibration_bins = calibration_bins
        self.vocab_size = len(VOCABULARY)
        self.num_classes = 2
        self.lengths = {part: self.clauses[part][1] * _CLAUSE + _SUBJECT
                        + (levels[1] + self.distractors[part][1]) * _MODIFIER
                        for part, levels in (("train", self.train_levels), ("eval", self.eval_levels))}
        self.max_length = max(self.lengths.values())

    def _make(self, split: str):
        part = "train" if split == "train" else "eval"
        length = self.lengths[part]

        def make(rng: np.random.Generator, size: int, index: int) -> dict[str, np.ndarray]:
            if part == "train":
                levels = rng.integers(self.train_levels[0], self.train_levels[1] + 1, size=size)
            else:
                levels = balanced_levels(self.eval_levels, size, index)
            tokens = np.zeros((size, length), dtype=np.int64)
            labels = np.zeros(size, dtype=np.int64)
            for row, attractors in enumerate(levels):
                words, labels[row] = agreement_prefix(
                    rng, attractors=int(attractors), distractors=draw(rng, self.distractors[part]),
                    clauses=draw(rng, self.clauses[part]), adjective_rate=self.adjective_rate,
                    relative_rate=self.relative_rate)
                tokens[row] = encode(words, length)
            return {"tokens": tokens, "mask": tokens != WORD_ID[PAD], "label": labels, "level": levels.astype(np.int64)}
        return make

    def batches(self, split, shard):
        if split not in ("train", "eval"):
            raise ConfigError(f"SubjectVerbAgreement has splits 'train' and 'eval', not {split!r}")
        return generated_batches(self._make(split), split, shard)

    def example_batch(self, batch_size: int = 1) -> dict[str, Any]:
        """A training batch padded to `max_length` (see the class docstring)."""
        batch = dict(super().example_batch(batch_size))
        extra = self.max_length - batch["tokens"].shape[1]
        batch["tokens"] = torch.nn.functional.pad(batch["tokens"], (0, extra), value=WORD_ID[PAD])
        batch["mask"] = torch.nn.functional.pad(batch["mask"], (0, extra), value=False)
        return batch

    def tokens(self, batch):
        return int(batch["mask"].sum())

    def evaluate(self, model, split: str, shard: Shard) -> dict[str, Any]:
        metrics = super().evaluate(model, split, shard)
        batches = self.batches(split, shard.replace(start=0))
        metrics.update(evaluate_calibration(lambda batch: self.forward(model, batch),
                                            (b for _, b in zip(range(self.eval_batch_count(shard)), batches)),
                                            device_of(model), bins=self.calibration_bins))
        return metrics
