"""The agreement generator's labels are right by construction: an independent parser reads
each decoded prefix, checks its grammar (including agreement inside relative and leading
clauses) and recomputes the label, the attractor count and the distances."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.data import Shard
from tasks.text.agreement import (ADJECTIVES, CLAUSE_VERBS, NOUNS, PREPOSITIONS, RELATIVE_VERBS, SubjectVerbAgreement,
                             decode)

NUMBER_OF_NOUN = {**{s: 0 for s, _ in NOUNS}, **{p: 1 for _, p in NOUNS}}
NUMBER_OF_RELATIVE_VERB = {**{s: 0 for s, _ in RELATIVE_VERBS}, **{p: 1 for _, p in RELATIVE_VERBS}}
NUMBER_OF_CLAUSE_VERB = {**{s: 0 for s, _ in CLAUSE_VERBS}, **{p: 1 for _, p in CLAUSE_VERBS}}


class Ungrammatical(Exception):
    pass


class Parser:
    """prefix := (NP clause-verb 'that')* NP modifier*;  NP := 'the' ADJ? NOUN;
    modifier := PREP NP | 'that' NP relative-verb, verbs agreeing with their NP."""

    def __init__(self, words: list[str]) -> None:
        self.words, self.at = words, 0

    def peek(self) -> str | None:
        return self.words[self.at] if self.at < len(self.words) else None

    def take(self) -> str:
        if self.at >= len(self.words):
            raise Ungrammatical("prefix ends too early")
        self.at += 1
        return self.words[self.at - 1]

    def noun_phrase(self) -> int:
        if self.take() != "the":
            raise Ungrammatical("a noun phrase starts with 'the'")
        word = self.take()
        if word in ADJECTIVES:
            word = self.take()
        if word not in NUMBER_OF_NOUN:
            raise Ungrammatical(f"expected a noun, got {word!r}")
        return NUMBER_OF_NOUN[word]

    def parse(self) -> dict[str, int]:
        clauses = 0
        while True:
            number = self.noun_phrase()
            if self.peek() in NUMBER_OF_CLAUSE_VERB:  # a leading clause: its NP is not the subject
                if NUMBER_OF_CLAUSE_VERB[self.take()] != number or self.take() != "that":
                    raise Ungrammatical("leading clause verb does not agree or 'that' is missing")
                clauses += 1
                continue
            break
        subject, intervening = number, []
        while self.peek() is not None:
            word = self.take()
            if word in PREPOSITIONS:
                intervening.append(self.noun_phrase())
            elif word == "that":
                noun = self.noun_phrase()
                verb = self.take()
                if NUMBER_OF_RELATIVE_VERB.get(verb) != noun:
                    raise Ungrammatical(f"relative clause verb {verb!r} does not agree with its noun")
                intervening.append(noun)
            else:
                raise Ungrammatical(f"unexpected {word!r}")
        return {"label": subject, "attractors": sum(n != subject for n in intervening),
                "distractors": sum(n == subject for n in intervening), "clauses": clauses}


def parse_batch(batch) -> list[dict[str, int]]:
    return [Parser(decode(row.numpy())).parse() for row in batch["tokens"]]


@pytest.mark.parametrize("split", ["train", "eval"])
def test_labels_and_attractor_counts_match_an_independent_parse(split):
    task = SubjectVerbAgreement(eval_attractors=(0, 4), eval_distractors=(0, 2), eval_clauses=(0, 2))
    stream = task.batches(split, Shard(batch_size=128, seed=3))
    parses, batches = [], []
    for _ in range(4):
        batch = next(stream)
        batches.append(batch)
        parses += parse_batch(batch)
    labels = torch.cat([b["label"] for b in batches]).tolist()
    levels = torch.cat([b["level"] for b in batches]).tolist()
    assert labels == [p["label"] for p in parses]
    assert levels == [p["attractors"] for p in parses]
    low, high = (0, 1) if split == "train" else (0, 4)
    assert {p["attractors"] for p in parses} == set(range(low, high + 1))
    assert max(p["distractors"] for p in parses) == (1 if split == "train" else 2)
    assert max(p["clauses"] for p in parses) == (1 if split == "train" else 2)
    assert 0.4 < np.mean(labels) < 0.6  # both numbers, about equally often
    lengths = torch.cat([b["mask"].sum(1) for b in batches])
    part = "train" if split == "train" else "eval"
    assert int(lengths.max()) <= task.lengths[part] == batches[0]["tokens"].shape[1] <= task.max_length


def test_the_parser_rejects_broken_agreement_and_finds_the_subject_after_leading_clauses():
    assert Parser("the boys say that the key near the cabinets".split()).parse() == {
        "label": 0, "attractors": 1, "distractors": 0, "clauses": 1}
    with pytest.raises(Ungrammatical):
        Parser("the key that the men likes".split()).parse()
    with pytest.raises(Ungrammatical):
        Parser("the boy say that the key".split()).parse()


def test_two_ranks_see_the_batch_one_rank_sees():
    task = SubjectVerbAgreement()
    whole = next(task.batches("eval", Shard(batch_size=8, seed=1)))
    halves = [next(task.batches("eval", Shard(batch_size=8, seed=1, rank=r, world_size=2))) for r in range(2)]
    for key in ("tokens", "label", "level", "mask"):
        assert torch.equal(torch.cat([h[key] for h in halves]), whole[key])


def test_a_model_too_short_for_the_evaluation_prefixes_fails_before_training():
    from models.transformer import TransformerClassifier
    task = SubjectVerbAgreement()
    assert task.lengths["train"] < task.max_length == task.lengths["eval"]
    model = TransformerClassifier(vocab_size=task.vocab_size, num_classes=2, max_len=task.lengths["train"],
                                  d_model=8, num_heads=2, num_layers=1)
    batch = task.example_batch(2)  # what `train` runs through the model before the first step
    with pytest.raises(ConfigError, match="max_len"):
        model(batch["tokens"], batch["mask"])


@pytest.mark.parametrize("binding", [{"train_attractors": (2, 1)}, {"eval_distractors": (0, 99)},
                                     {"adjective_rate": 1.5}, {"train_clauses": 3}])
def test_bad_ranges_are_config_errors(binding):
    with pytest.raises(ConfigError):
        SubjectVerbAgreement(**binding)


def test_the_gin_shapes_fit_the_task_they_configure():
    import gin
    from engine import config
    from tests.helpers import REPO
    config.parse([f"{REPO}/gin/kd/kd_transformer.gin"])
    task = gin.get_configurable("SubjectVerbAgreement")()
    assert gin.query_parameter("%VOCAB_SIZE") == task.vocab_size
    assert gin.query_parameter("%MAX_LEN") == task.max_length
