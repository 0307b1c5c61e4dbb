"""LRA Text: byte-level binary sentiment classification of IMDb reviews.

Reads the IMDb layout `aclImdb/{train,test}/{pos,neg}/*.txt` or TSV files (`label<TAB>text`);
as in LRA's code the test split serves as validation too. Without either, a generated stand-in
with the same shape (synthetic reviews, tasks/lra/synthetic_documents.py) is used and announced.
"""
from __future__ import annotations

import glob
import os

import gin
import numpy as np

from engine.errors import ConfigError
from tasks.lra import synthetic_documents
from tasks.lra.base import ByteSequenceTask, byte_rows, release_dir


def imdb_root(folder: str) -> str | None:
    """`folder` itself or its `aclImdb` child, whichever holds train/pos."""
    for root in (folder, os.path.join(folder, "aclImdb")):
        if os.path.isdir(os.path.join(root, "train", "pos")):
            return root
    return None


def read_imdb(root: str, split: str) -> tuple[list[bytes], np.ndarray]:
    """Reviews and labels (pos = 1) of `train` or `test`, in sorted file order."""
    texts, labels = [], []
    for label, polarity in ((0, "neg"), (1, "pos")):
        for path in sorted(glob.glob(os.path.join(root, split, polarity, "*.txt"))):
            with open(path, "rb") as handle:
                texts.append(handle.read())
            labels.append(label)
    if not texts:
        raise ConfigError(f"no reviews in {root}/{split}/{{pos,neg}}")
    return texts, np.array(labels, dtype=np.int64)


def read_labelled_tsv(path: str) -> tuple[list[bytes], np.ndarray]:
    """Rows `label<TAB>text` (a header row whose label is not a number is skipped)."""
    texts, labels = [], []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            label, separator, text = line.partition(b"\t")
            try:
                labels.append(int(float(label)))
            except ValueError:
                if number == 1:
                    continue  # header
                raise ConfigError(f"{path}, line {number}: the label {label[:20]!r} is not a number") from None
            if not separator:
                raise ConfigError(f"{path}, line {number}: expected 'label<TAB>text'")
            texts.append(text)
    return texts, np.array(labels, dtype=np.int64)


def _has_text_files(folder: str) -> bool:
    return imdb_root(folder) is not None or all(
        os.path.isfile(os.path.join(folder, f"{s}.tsv")) for s in ("train", "test"))


@gin.configurable
class LRAText(ByteSequenceTask):
    """Binary classification of UTF-8 byte sequences (ids = byte + 1, 0 = padding; vocab 257),
    truncated to `max_length` bytes (LRA's released config: 1,000; the paper: up to 4K)."""


    def __init__(self, *, max_length: int = 1000, data_dir: str | None = None, num_classes: int = 2,
                 num_train: int = 25_000, num_eval: int = 2_000, num_test: int = 25_000, data_seed: int = 0) -> None:
        super().__init__(max_length)
        self.num_classes = num_classes
        folder = release_dir(data_dir, "aclImdb", _has_text_files,
                             "LRAText.data_dir (aclImdb/{train,test}/{pos,neg} or train.tsv and test.tsv)")
        if folder is None:
            self.use_stand_in(
                lambda rng, n: synthetic_documents.sentiment_documents(rng, n, max_length),
                {"train": num_train, "eval": num_eval, "test": num_test}, data_seed,
                "no IMDb files found (set LRAText.data_dir or $LRA_DATA/aclImdb); training on generated "
                "byte-level 'synthetic reviews' whose label is the majority polarity of cue words spread over "
                f"each document ({num_train:,} / {num_eval:,} / {num_test:,} documents of up to {max_length} bytes)")
            return
        root = imdb_root(folder)
        if root is not None:
            parts = {split: read_imdb(root, split) for split in ("train", "test")}
            source = f"IMDb reviews in {root}"
        else:
            parts = {split: read_labelled_tsv(os.path.join(folder, f"{split}.tsv")) for split in ("train", "test")}
            if os.path.isfile(os.path.join(folder, "eval.tsv")):
                parts["eval"] = read_labelled_tsv(os.path.join(folder, "eval.tsv"))
            source = f"TSV files in {folder}"
        for split, (texts, labels) in parts.items():
            tokens, lengths = byte_rows(texts, max_length)
            self.splits[split] = {"tokens": tokens, "length": lengths, "label": labels}
        self.splits.setdefault("eval", self.splits["test"])  # LRA validates on the test split
        for split, (_, labels) in parts.items():
            if labels.min() < 0 or labels.max() >= num_classes:
                raise ConfigError(f"{source}: {split} labels span {labels.min()}..{labels.max()}, outside "
                                  f"0..{num_classes - 1}; set LRAText.num_classes")
        self.describe(f"{source}; bytes truncated to {max_length}")
