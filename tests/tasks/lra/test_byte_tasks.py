"""Text and Retrieval: the IMDb, TSV and AAN loaders on files the tests write, and the
announced stand-ins whose labels follow from the cue words they carry."""
from __future__ import annotations

import logging
import os

import pytest

from engine.errors import ConfigError
from engine.data import Shard
from tasks.lra import synthetic_documents
from tasks.lra.retrieval import LRARetrieval
from tasks.lra.text import LRAText


@pytest.fixture(autouse=True)
def no_release_root(monkeypatch):
    monkeypatch.delenv("LRA_DATA", raising=False)


def decoded(task, split: str, index: int, suffix: str = "") -> bytes:
    row = task.splits[split]
    return bytes(row[f"tokens{suffix}"][index, :row[f"length{suffix}"][index]])


def test_imdb_layout_round_trips_and_test_doubles_as_eval(tmp_path):
    reviews = {("train", "pos"): ["Great film.", "Loved it, ünïcode"], ("train", "neg"): ["Dull."],
               ("test", "pos"): ["Fine"], ("test", "neg"): ["A" * 40]}
    for (split, polarity), texts in reviews.items():
        os.makedirs(tmp_path / "aclImdb" / split / polarity)
        for i, text in enumerate(texts):
            rating = 7 if polarity == "pos" else 2  # IMDb names: <id>_<rating>.txt
            (tmp_path / "aclImdb" / split / polarity / f"{i}_{rating}.txt").write_text(text, encoding="utf-8")
    task = LRAText(data_dir=str(tmp_path), max_length=16)
    assert task.splits["train"]["label"].tolist() == [0, 1, 1]  # neg first, files sorted
    assert decoded(task, "train", 2) == "Loved it, ünïcode".encode()[:16]
    assert decoded(task, "test", 0) == b"A" * 16  # truncated to max_length bytes
    assert task.splits["eval"] is task.splits["test"]
    batch = next(task.batches("train", Shard(batch_size=3)))
    tokens, mask = task.decode(batch)
    assert tokens.max() <= 256 and tokens[~mask].eq(0).all() and tokens[mask].ge(1).all()  # byte + 1
    assert "STAND-IN" not in task.source


def test_tsv_text_files_round_trip_and_bad_rows_are_reported(tmp_path):
    (tmp_path / "train.tsv").write_text("label\ttext\n1\tgood\n0\tbad one\n")
    (tmp_path / "test.tsv").write_text("0\tmeh\n")
    task = LRAText(data_dir=str(tmp_path), max_length=8)
    assert decoded(task, "train", 1) == b"bad one" and task.splits["train"]["label"].tolist() == [1, 0]
    (tmp_path / "test.tsv").write_text("0\tmeh\n7\tseven\n")
    with pytest.raises(ConfigError, match="num_classes"):
        LRAText(data_dir=str(tmp_path), max_length=8)
    (tmp_path / "test.tsv").write_text("0\tmeh\nx\ty\n")
    with pytest.raises(ConfigError, match="line 2"):
        LRAText(data_dir=str(tmp_path), max_length=8)
    with pytest.raises(ConfigError, match="does not hold"):
        LRAText(data_dir=str(tmp_path / "nowhere"))


@pytest.mark.parametrize("cue_words", [16, 4])  # the default lexicon and the cpu bed's
def test_text_stand_in_is_announced_and_its_label_is_the_majority_of_its_cues(caplog, cue_words):
    with caplog.at_level(logging.WARNING, logger="tasks.lra"):
        task = LRAText(max_length=200, num_train=40, num_eval=4, num_test=4, cue_words=cue_words)
    assert "STAND-IN" in caplog.text and "STAND-IN" in task.summarize("eval", {})["data"].text
    positive, negative, _ = synthetic_documents.sentiment_lexicons(cue_words)
    for i in range(40):
        words = decoded(task, "train", i).split(b" ")
        votes = sum(w in positive for w in words) - sum(w in negative for w in words)
        assert sum(w in positive or w in negative for w in words) == 5
        assert (votes > 0) == bool(task.splits["train"]["label"][i])
    assert task.splits["train"]["length"].max() <= 200


def test_aan_pairs_round_trip(tmp_path):
    rows = ["1.0\tid1\tid2\tfirst paper text\tsecond paper", "0.0\tid3\tid4\t" + "x" * 50 + "\tshort"]
    for split in ("train", "eval", "test"):
        (tmp_path / f"new_aan_pairs.{split}.tsv").write_text("\n".join(rows) + "\n")
    task = LRARetrieval(data_dir=str(tmp_path), max_length=20)
    assert task.splits["train"]["label"].tolist() == [1, 0]
    assert decoded(task, "eval", 0) == b"first paper text" and decoded(task, "eval", 0, "2") == b"second paper"
    assert decoded(task, "test", 1) == b"x" * 20
    (tmp_path / "new_aan_pairs.test.tsv").write_text("1.0\tonly\tthree\n")
    with pytest.raises(ConfigError, match="5 tab-separated fields"):
        LRARetrieval(data_dir=str(tmp_path), max_length=20)


# the default lexicon and signature, the smallest lexicon allowed, and one word of two repeated (the cpu bed's kind)
@pytest.mark.parametrize("topic_words, signature, repeats", [(64, 4, 2), (8, 4, 2), (2, 1, 8)])
def test_retrieval_stand_in_is_announced_and_matches_share_their_topic_words(caplog, topic_words, signature, repeats):
    with caplog.at_level(logging.WARNING, logger="tasks.lra"):
        task = LRARetrieval(max_length=300, num_train=30, num_eval=4, num_test=4, topic_words=topic_words,
                            signature_words=signature, topic_repeats=repeats)
    assert "STAND-IN" in caplog.text
    topics, _ = synthetic_documents.topic_lexicons(topic_words)
    for i in range(30):
        first = [w for w in decoded(task, "train", i).split(b" ") if w in topics]
        second = [w for w in decoded(task, "train", i, "2").split(b" ") if w in topics]
        assert len(first) == len(second) == signature * repeats
        first, second = set(first), set(second)
        assert len(first) == len(second) == signature
        assert (first == second) == bool(task.splits["train"]["label"][i])
        assert first == second or not first & second
    batch = next(task.batches("train", Shard(batch_size=4)))
    assert task.tokens(batch) == int(batch["length"].sum() + batch["length2"].sum())
    with pytest.raises(ConfigError, match="topic_words"):  # fewer than two disjoint signatures
        LRARetrieval(max_length=300, num_train=2, num_eval=1, num_test=1, topic_words=7)
    with pytest.raises(ConfigError, match="topic_words"):
        LRARetrieval(max_length=300, num_train=2, num_eval=1, num_test=1, topic_words=3, signature_words=2)
