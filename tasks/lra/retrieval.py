"""LRA Retrieval: do two papers cite each other? Byte-level matching on the ACL Anthology
Network, read as document pairs by a two-tower model (models/two_tower.py).

Reads `new_aan_pairs.{train,eval,test}.tsv` (label, id1, id2, text1, text2; each text cut to
10,000 characters, then bytes to `max_length`); without them a generated stand-in (synthetic
citation pairs, tasks/lra/synthetic_documents.py) is used and announced.
"""
from __future__ import annotations

import os

import gin
import numpy as np

from engine.errors import require_int
from engine.file_errors import file_error, parse_label, reading
from tasks.lra import synthetic_documents
from tasks.lra.base import ByteSequenceTask, byte_rows, release_dir

RELEASED_FILES = {split: f"new_aan_pairs.{split}.tsv" for split in ("train", "eval", "test")}
MAX_CHARACTERS = 10_000  # LRA cuts each text to this many characters before encoding
SIGNATURE_WORDS = 4  # topic words per stand-in document by default; non-matching pairs share none


def read_pairs(path: str) -> tuple[list[bytes], list[bytes], np.ndarray]:
    """(first texts, second texts, labels) of one AAN TSV file (no header, no quoting; blank
    lines skipped). A row with other than 5 fields or a label that is not 0 or 1 ('1.0' reads as
    1, '0.5' is refused) is a ConfigError naming the file and line; so is a file with no rows."""
    first, second, labels = [], [], []
    with reading(path), open(path, encoding="utf-8", errors="replace", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip("\r\n").split("\t")
            if fields == [""]:
                continue
            if len(fields) != 5:
                raise file_error(path, f"expected 5 tab-separated fields (label, id1, id2, text1, text2), "
                                 f"got {len(fields)}", line=number)
            labels.append(parse_label(fields[0], 2, path, line=number))
            first.append(fields[3][:MAX_CHARACTERS].encode("utf-8"))
            second.append(fields[4][:MAX_CHARACTERS].encode("utf-8"))
    if not labels:
        raise file_error(path, "holds no rows")
    return first, second, np.array(labels, dtype=np.int64)


@gin.configurable
class LRARetrieval(ByteSequenceTask):
    """Binary classification of byte-sequence pairs (ids = byte + 1, 0 = padding; vocab 257);
    the model is called as model(tokens, mask, tokens2, mask2). The generated stand-in gives each
    document `signature_words` topic words from a lexicon of `topic_words` (at least
    two signatures' worth, so non-matching pairs can be disjoint), each `topic_repeats` times."""

    pair = True

    def __init__(self, *, max_length: int = 4000, data_dir: str | None = None, num_train: int = 147_086,
                 num_eval: int = 18_090, num_test: int = 17_437, data_seed: int = 0,
                 topic_words: int = 64, signature_words: int = SIGNATURE_WORDS, topic_repeats: int = 2) -> None:
        super().__init__(max_length)
        self.num_classes = 2
        self.signature_words = require_int(signature_words, "LRARetrieval.signature_words", low=1)
        self.topic_words = require_int(topic_words, "LRARetrieval.topic_words", low=2 * self.signature_words)
        self.topic_repeats = require_int(topic_repeats, "LRARetrieval.topic_repeats", low=1)
        folder = release_dir(data_dir, "tsv_data",
                             lambda d: all(os.path.isfile(os.path.join(d, f)) for f in RELEASED_FILES.values()),
                             "LRARetrieval.data_dir (new_aan_pairs.{train,eval,test}.tsv)",
                             expected=tuple(RELEASED_FILES.values()))
        if folder is None:
            self.use_stand_in(
                lambda rng, n, progress: synthetic_documents.matching_documents(
                    rng, n, max_length, signature=self.signature_words, repeats=self.topic_repeats,
                    topic_words=self.topic_words, progress=progress),
                {"train": num_train, "eval": num_eval, "test": num_test}, data_seed,
                "no AAN files found (set LRARetrieval.data_dir or $LRA_DATA/tsv_data); training on generated "
                "byte-level 'synthetic citation pairs' that match when both documents carry the same "
                f"{self.signature_words} topic word(s), {self.topic_repeats} times each ({self.topic_words} in the "
                f"lexicon; {num_train:,} / {num_eval:,} / {num_test:,} pairs of up to {max_length} bytes)")
            return
        for split, name in RELEASED_FILES.items():
            first, second, labels = read_pairs(os.path.join(folder, name))
            tokens, lengths = byte_rows(first, max_length)
            tokens2, lengths2 = byte_rows(second, max_length)
            self.splits[split] = {"tokens": tokens, "length": lengths, "tokens2": tokens2,
                                  "length2": lengths2, "label": labels}
        self.describe(f"AAN pairs in {folder}; bytes truncated to {max_length}")
