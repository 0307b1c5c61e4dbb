"""Span corruption, the topic-Markov corpus and its exact Bayes floor, text files, and the
downstream latent-structure tasks."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.data import Shard
from tasks.text.latent_classification import LatentStructure
from tasks.text.markov_corpus import TopicMarkovSource
from tasks.text.span_corruption import SpanCorruption, corrupt, noise_masks, reconstruct, span_counts
from tasks.text.text_corpus import TextFiles
from tasks.text.text_to_text import EOS_ID, WORD_OFFSET


def test_targets_put_back_over_sentinels_rebuild_the_document():
    rng = np.random.default_rng(0)
    words = rng.integers(WORD_OFFSET, 60, size=(50, 64))
    noise = noise_masks(rng, 50, 64, 0.15, 3.0)
    inputs, targets = corrupt(words, noise, vocab_size=100)
    _, spans = span_counts(64, 0.15, 3.0)
    for row in range(50):
        assert reconstruct(inputs[row], targets[row], 100, spans) == words[row].tolist()
    assert (inputs[:, -1] == EOS_ID).all() and (targets[:, -1] == EOS_ID).all()


def test_noise_density_is_realised_within_two_hundredths():
    for length in (32, 64, 100, 512):
        masks = noise_masks(np.random.default_rng(length), 20, length, 0.15, 3.0)
        assert abs(masks.mean() - 0.15) <= 0.02
        starts = masks & ~np.concatenate([np.zeros((20, 1), bool), masks[:, :-1]], axis=1)
        assert not masks[:, 0].any() and masks[:, -1].all()  # kept first, noise last (T5's layout)
        assert abs(masks.sum() / starts.sum() - 3.0) < 0.75  # mean span length, up to rounding


def test_batches_are_a_pure_function_of_seed_split_and_index():
    task = SpanCorruption(corpus=TopicMarkovSource(), vocab_size=128, length=32)
    first = next(task.batches("train", Shard(batch_size=4, seed=3, start=5)))
    again = next(task.batches("train", Shard(batch_size=4, seed=3, start=5)))
    other = next(task.batches("train", Shard(batch_size=4, seed=4, start=5)))
    assert torch.equal(first["inputs"], again["inputs"]) and not torch.equal(first["inputs"], other["inputs"])
    assert first["inputs"].shape == (4, task.input_length) and first["targets"].shape == (4, task.target_length)


def test_bayes_floor_equals_brute_force_enumeration():
    source = TopicMarkovSource(num_words=3, num_topics=2, concentration=0.7, seed=3)
    words = np.array([1, 0, 0, 1, 2, 2, 2, 1, 2])
    noise = np.array([0, 0, 1, 1, 0, 1, 0, 1, 1], bool)  # spans: kept 2, noise 2, kept 1, noise 1, kept 1, noise 2
    visible = [list(words[0:2]), [words[4]], [words[6]]]

    def log_p(sequence):
        return np.logaddexp.reduce(np.log(0.5) + source.log_likelihood(np.array(sequence)))
    every = []
    for lengths in itertools.product(range(1, 6), repeat=3):
        if sum(lengths) != 5:
            continue
        for fill in itertools.product(range(3), repeat=5):
            sequence, rest = [], list(fill)
            for kept, length in zip(visible, lengths):
                sequence += kept + rest[:length]
                rest = rest[length:]
            every.append(log_p(sequence))
    expected = np.logaddexp.reduce(every) - log_p(words)
    assert math.isclose(source.span_nll(words, noise), expected, rel_tol=1e-9)


def test_vocabulary_without_room_for_sentinels_is_a_config_error():
    with pytest.raises(ConfigError, match="no room"):
        SpanCorruption(corpus=TopicMarkovSource(num_words=64), vocab_size=67, length=64)


def test_text_files_give_byte_documents(tmp_path):
    (tmp_path / "a.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40)
    corpus = TextFiles(paths=[str(tmp_path / "*.txt")], eval_fraction=0.2)
    task = SpanCorruption(corpus=corpus, vocab_size=2 + 256 + 16, length=32)
    batch = next(task.batches("eval", Shard(batch_size=3)))
    first_sentinel = 2 + 256 + 16 - task.spans
    document = reconstruct(batch["inputs"][0].numpy(), batch["targets"][0].numpy(), 2 + 256 + 16, task.spans)
    text = bytes(t - WORD_OFFSET for t in document).decode()
    assert text in "the quick brown fox jumps over the lazy dog. " * 3 and first_sentinel > 257
    with pytest.raises(ConfigError, match="matches no file"):
        TextFiles(paths=[str(tmp_path / "*.md")])
    with pytest.raises(ConfigError, match="no such file"):
        TextFiles(paths=[str(tmp_path / "*.txt")], sentencepiece_model=str(tmp_path / "missing.model"))


@pytest.mark.parametrize("question", ["topic", "reversed", "spliced"])
def test_downstream_labels_are_recoverable_from_the_source(question):
    """The Bayes classifier built from the source's likelihoods solves each task, so a label is
    really a function of the latent structure and not noise."""
    source = TopicMarkovSource()
    task = LatentStructure(corpus=source, question=question, length=64)
    words, labels = task.examples(np.random.default_rng(0), 200)
    if question == "topic":
        guesses = [np.argmax(source.log_likelihood(w)) for w in words]
    elif question == "reversed":
        guesses = [int(np.logaddexp.reduce(source.log_likelihood(w[::-1]))
                       > np.logaddexp.reduce(source.log_likelihood(w))) for w in words]
    else:  # one topic for both halves vs the best pair of topics
        guesses = [int(np.max(source.log_likelihood(w[:32])[:, None] + source.log_likelihood(w[32:])[None, :])
                       - np.max(source.log_likelihood(w[:32]) + source.log_likelihood(w[32:])) > 2.0) for w in words]
    assert np.mean(np.array(guesses) == labels) > 0.9
    batch = next(task.batches("train", Shard(batch_size=4)))
    assert (batch["targets"][:, 0] == batch["label"] + WORD_OFFSET).all()


def test_a_local_sentencepiece_model_gives_piece_documents(tmp_path):
    sentencepiece = pytest.importorskip("sentencepiece")
    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"line {i} of a small corpus about foxes and dogs.\n" for i in range(300)))
    sentencepiece.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "sp"), vocab_size=60,
                                             minloglevel=2)
    corpus = TextFiles(paths=[str(text)], sentencepiece_model=str(tmp_path / "sp.model"))
    assert corpus.num_words == 60
    task = SpanCorruption(corpus=corpus, vocab_size=2 + 60 + 8, length=24)
    batch = next(task.batches("train", Shard(batch_size=2)))
    pieces = reconstruct(batch["inputs"][0].numpy(), batch["targets"][0].numpy(), 70, task.spans)
    processor = sentencepiece.SentencePieceProcessor(model_file=str(tmp_path / "sp.model"))
    decoded = processor.decode([p - WORD_OFFSET for p in pieces])
    assert len(pieces) == 24 and " ".join(decoded.split()) in " ".join(text.read_text().split())


def test_topic_bayes_accuracy_is_the_exact_posteriors_hit_rate():
    source = TopicMarkovSource(num_words=8, num_topics=3, concentration=0.5)
    sample = source.sample(np.random.default_rng(0), 400, 3)
    by_document = np.mean([source.log_likelihood(words).argmax() == topic
                           for words, topic in zip(sample["words"], sample["topic"])])
    assert source.topic_bayes_accuracy(3, documents=400, seed=0) == pytest.approx(by_document)
    assert TopicMarkovSource(num_words=8, num_topics=1).topic_bayes_accuracy(3, documents=50) == 1.0
    assert 1 / 3 < source.topic_bayes_accuracy(1) < source.topic_bayes_accuracy(6) <= 1.0
