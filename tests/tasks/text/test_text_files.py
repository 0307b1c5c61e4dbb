"""Malformed local text corpora (tasks/text/text_corpus.py): bytes that are not UTF-8 are read as
U+FFFD with a count in the log, a corrupt SentencePiece model is one ConfigError naming the file,
and text mode's newline handling is kept."""
from __future__ import annotations

import logging

import pytest

from tasks.text.text_corpus import TextFiles, read_texts
from tests.helpers import config_error


def test_invalid_utf8_is_replaced_and_counted_in_the_log(tmp_path, caplog):
    (tmp_path / "a.txt").write_bytes(b"caf\xe9 au lait \xff\xfe and \xef\xbf\xbd kept\r\nnext line\rlast")
    with caplog.at_level(logging.WARNING, logger="tasks.text"):
        (text,) = read_texts([str(tmp_path / "a.txt")])
    assert text == "caf\ufffd au lait \ufffd\ufffd and \ufffd kept\nnext line\nlast"  # newlines as text mode reads
    assert f"{tmp_path / 'a.txt'} is not valid UTF-8 (first bad byte at offset 3): 3 invalid sequence(s)" in caplog.text


def test_a_clean_file_logs_nothing(tmp_path, caplog):
    (tmp_path / "a.txt").write_text("plain text " * 20, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="tasks.text"):
        corpus = TextFiles(paths=[str(tmp_path / "*.txt")])
    assert corpus.num_words == 256 and not caplog.records


def test_a_corrupt_or_truncated_sentencepiece_model_names_the_file(tmp_path):
    sentencepiece = pytest.importorskip("sentencepiece")
    text = tmp_path / "corpus.txt"
    text.write_text("".join(f"line {i} of a small corpus about foxes and dogs.\n" for i in range(300)))
    sentencepiece.SentencePieceTrainer.train(input=str(text), model_prefix=str(tmp_path / "sp"), vocab_size=60,
                                             minloglevel=2)
    model = tmp_path / "sp.model"
    whole = model.read_bytes()
    # Cut between pieces (sentencepiece itself would load 8 of the 60 pieces), mid-piece, or garbage.
    for cut in (whole[:100], whole[:len(whole) // 2], b"not a model"):
        model.write_bytes(cut)
        with config_error(model, "is not a SentencePiece model", "truncated?"):
            TextFiles(paths=[str(text)], sentencepiece_model=str(model))
    model.write_bytes(whole)
    assert TextFiles(paths=[str(text)], sentencepiece_model=str(model)).num_words == 60
    with config_error(f"TextFiles.sentencepiece_model: no such file {str(tmp_path / 'gone.model')!r}"):
        TextFiles(paths=[str(text)], sentencepiece_model=str(tmp_path / "gone.model"))
