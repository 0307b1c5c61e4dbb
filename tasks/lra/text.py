"""LRA Text: byte-level binary sentiment classification of IMDb reviews.

Reads the IMDb layout `aclImdb/{train,test}/{pos,neg}/*.txt` or TSV files (`label<TAB>text`);
as in LRA's code the test split serves as validation too. Without either, a generated stand-in
with the same shape (synthetic reviews, tasks/lra/synthetic_documents.py) is used and announced.
"""
from __future__ import annotations

import glob
import os
import re

import gin
import numpy as np

from engine.errors import ConfigError, require_int
from engine.file_errors import file_error, parse_label, reading
from tasks.lra import synthetic_documents
from tasks.lra.base import ByteSequenceTask, byte_rows, release_dir


def imdb_root(folder: str) -> str | None:
    """`folder` itself or its `aclImdb` child, whichever holds train/pos."""
    for root in (folder, os.path.join(folder, "aclImdb")):
        if os.path.isdir(os.path.join(root, "train", "pos")):
            return root
    return None


#: IMDb names a review `<id>_<rating>.txt`; ratings 1-4 are negative, 7-10 positive.
IMDB_NAME = re.compile(r"^\d+_(\d+)\.txt$")


def read_imdb(root: str, split: str) -> tuple[list[bytes], np.ndarray]:
    """Reviews and labels (pos = 1) of `train` or `test`, in sorted file order.

    Both polarity folders must hold reviews. A review file that cannot be read or is empty (a
    truncated copy) is a ConfigError naming it, and so is one whose IMDb name gives a rating of
    the other polarity (a review filed in the wrong folder would train on a wrong label).
    """
    texts, labels = [], []
    for label, polarity in ((0, "neg"), (1, "pos")):
        paths = sorted(glob.glob(os.path.join(root, split, polarity, "*.txt")))
        if not paths:
            raise ConfigError(f"no reviews (*.txt) in {os.path.join(root, split, polarity)}")
        for path in paths:
            with reading(path), open(path, "rb") as handle:
                text = handle.read()
            if not text:
                raise file_error(path, "is empty (a truncated copy?)")
            name = IMDB_NAME.match(os.path.basename(path))
            if name and not (int(name.group(1)) >= 7 if label else int(name.group(1)) <= 4):
                raise file_error(path, f"names rating {name.group(1)}, not a {polarity} rating (neg: 1-4, "
                                 f"pos: 7-10); a review in the wrong folder would train on a wrong label")
            texts.append(text)
            labels.append(label)
    return texts, np.array(labels, dtype=np.int64)


def read_labelled_tsv(path: str, num_classes: int = 2) -> tuple[list[bytes], np.ndarray]:
    """Rows `label<TAB>text`; a first row whose label is not a number is a header and skipped, as
    are blank lines. A row without a tab, or whose label is not an integer in
    0..num_classes - 1, is a ConfigError naming the file and line; so is a file with no rows."""
    texts, labels = [], []
    with reading(path), open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            label, separator, text = line.partition(b"\t")
            if number == 1 and not _is_number(label):
                continue  # header
            labels.append(parse_label(label, num_classes, path, line=number, hint="set LRAText.num_classes"))
            if not separator:
                raise file_error(path, "expected 'label<TAB>text', found no tab", line=number)
            texts.append(text)
    if not texts:
        raise file_error(path, "holds no rows")
    return texts, np.array(labels, dtype=np.int64)


def _is_number(field: bytes) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _has_text_files(folder: str) -> bool:
    return imdb_root(folder) is not None or all(
        os.path.isfile(os.path.join(folder, f"{s}.tsv")) for s in ("train", "test"))


@gin.configurable
class LRAText(ByteSequenceTask):
    """Binary classification of UTF-8 byte sequences (ids = byte + 1, 0 = padding; vocab 257),
    truncated to `max_length` bytes (LRA's released config: 1,000; the paper: up to 4K).
    Malformed files (an empty or misfiled review, a bad TSV row or label) are ConfigErrors
    naming the file and line (`read_imdb`, `read_labelled_tsv`). `cue_words` (per polarity) sizes
    the generated stand-in's sentiment lexicon: fewer words are quicker for a small byte-level
    model to learn, without changing where the evidence lies."""

    def __init__(self, *, max_length: int = 1000, data_dir: str | None = None, num_classes: int = 2,
                 num_train: int = 25_000, num_eval: int = 2_000, num_test: int = 25_000, data_seed: int = 0,
                 cue_words: int = 16) -> None:
        super().__init__(max_length)
        self.cue_words = require_int(cue_words, "LRAText.cue_words", low=1)
        self.num_classes = require_int(num_classes, "LRAText.num_classes", low=2)
        folder = release_dir(data_dir, "aclImdb", _has_text_files,
                             "LRAText.data_dir (aclImdb/{train,test}/{pos,neg} or train.tsv and test.tsv)")
        if folder is None:
            self.use_stand_in(
                lambda rng, n, progress: synthetic_documents.sentiment_documents(
                    rng, n, max_length, cue_words=self.cue_words, progress=progress),
                {"train": num_train, "eval": num_eval, "test": num_test}, data_seed,
                "no IMDb files found (set LRAText.data_dir or $LRA_DATA/aclImdb); training on generated "
                "byte-level 'synthetic reviews' whose label is the majority polarity of cue words spread over "
                f"each document ({self.cue_words} cue words per polarity; {num_train:,} / {num_eval:,} / "
                f"{num_test:,} documents of up to {max_length} bytes)")
            return
        root = imdb_root(folder)
        if root is not None:
            parts = {split: read_imdb(root, split) for split in ("train", "test")}
            source = f"IMDb reviews in {root}"
        else:
            parts = {split: read_labelled_tsv(os.path.join(folder, f"{split}.tsv"), num_classes)
                     for split in ("train", "test")}
            if os.path.isfile(os.path.join(folder, "eval.tsv")):
                parts["eval"] = read_labelled_tsv(os.path.join(folder, "eval.tsv"), num_classes)
            source = f"TSV files in {folder}"
        for split, (texts, labels) in parts.items():
            tokens, lengths = byte_rows(texts, max_length)
            self.splits[split] = {"tokens": tokens, "length": lengths, "label": labels}
        self.splits.setdefault("eval", self.splits["test"])  # LRA validates on the test split
        self.describe(f"{source}; bytes truncated to {max_length}")
