"""Local text files as a span-corruption corpus: bytes by default (256 words), or the pieces
of a local SentencePiece model when one is given. Nothing is downloaded.

The token stream of all files is split once: the last `eval_fraction` is the eval split.
Documents are windows at random offsets, a pure function of the batch generator's state.
"""
from __future__ import annotations

import glob
import logging
import os
from typing import Sequence

import gin
import numpy as np

from engine.errors import ConfigError, require
from engine.file_errors import file_error, reading, reason

log = logging.getLogger("tasks.text")


def read_texts(patterns: Sequence[str]) -> list[str]:
    """The text of every file the glob `patterns` match (sorted, directories left out). A file
    that is not valid UTF-8 is read with U+FFFD in place of each bad byte sequence, and the count
    is logged per file; an unreadable file is a ConfigError naming it."""
    paths = sorted({path for pattern in patterns for path in glob.glob(os.path.expanduser(pattern), recursive=True)
                    if os.path.isfile(path)})
    if not paths:
        raise ConfigError(f"TextFiles.paths = {list(patterns)!r} matches no file")
    texts = []
    for path in paths:
        with reading(path), open(path, "rb") as handle:
            raw = handle.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            text = raw.decode("utf-8", errors="replace")
            replaced = text.count("\ufffd") - raw.count("\ufffd".encode("utf-8"))
            log.warning("%s is not valid UTF-8 (first bad byte at offset %d): %d invalid sequence(s) read as "
                        "U+FFFD", path, error.start, replaced)
        texts.append(text.replace("\r\n", "\n").replace("\r", "\n"))  # universal newlines, as text mode reads
    return texts


def sentencepiece_ids(texts: Sequence[str], model_file: str) -> tuple[np.ndarray, int]:
    """Token ids of `texts` under a local SentencePiece model, and its vocabulary size; a model
    file that is missing, truncated or not a SentencePiece model is a ConfigError naming it."""
    if not os.path.isfile(model_file):
        raise ConfigError(f"TextFiles.sentencepiece_model: no such file {model_file!r}")
    try:
        import sentencepiece
    except ImportError:
        raise ConfigError("TextFiles.sentencepiece_model needs the sentencepiece package "
                          "(pip install sentencepiece), or leave it unset for bytes") from None
    with reading(model_file), open(model_file, "rb") as handle:
        fields = _top_level_fields(handle.read())
    if fields is None or not {2, 3} <= fields:
        # A copy cut between two pieces still parses, as a model with fewer pieces and no specs.
        raise file_error(model_file, "is not a SentencePiece model (it lacks the trainer and normalizer specs "
                         "every trained model holds); truncated?")
    try:
        processor = sentencepiece.SentencePieceProcessor(model_file=model_file)
    except (OSError, RuntimeError, ValueError) as error:
        raise file_error(model_file, f"is not a SentencePiece model ({reason(error)}); truncated?") from error
    ids = [token for text in texts for token in processor.encode(text)]
    return np.asarray(ids, dtype=np.int64), int(processor.get_piece_size())


def _top_level_fields(raw: bytes) -> set[int] | None:
    """The field numbers of a serialized protobuf message (SentencePiece's ModelProto: 1 pieces,
    2 trainer_spec, 3 normalizer_spec), or None where the bytes are not a whole message."""
    def varint(i: int) -> tuple[int, int]:
        value = shift = 0
        while i < len(raw):
            byte = raw[i]
            value, shift, i = value | (byte & 0x7F) << shift, shift + 7, i + 1
            if not byte & 0x80:
                return value, i
        raise IndexError
    fields, i = set(), 0
    try:
        while i < len(raw):
            key, i = varint(i)
            wire = key & 7
            if wire == 0:
                i = varint(i)[1]
            elif wire == 2:
                size, i = varint(i)
                i += size
            elif wire in (1, 5):
                i += 8 if wire == 1 else 4
            else:
                return None
            fields.add(key >> 3)
    except IndexError:
        return None
    return fields if i == len(raw) else None


@gin.configurable
class TextFiles:
    """Words are bytes (num_words = 256) or SentencePiece ids (num_words = its vocabulary)."""

    def __init__(self, *, paths: Sequence[str] = gin.REQUIRED, sentencepiece_model: str | None = None,
                 eval_fraction: float = 0.05) -> None:
        require(0 < eval_fraction < 1, f"TextFiles.eval_fraction must be in (0, 1), got {eval_fraction}")
        if isinstance(paths, str):
            paths = [paths]
        texts = read_texts(paths)
        if sentencepiece_model:
            ids, self.num_words = sentencepiece_ids(texts, sentencepiece_model)
        else:
            ids = np.frombuffer("".join(texts).encode("utf-8"), dtype=np.uint8).astype(np.int64)
            self.num_words = 256
        cut = int(len(ids) * (1 - eval_fraction))
        self.streams = {"train": ids[:cut], "eval": ids[cut:]}

    def sample(self, rng: np.random.Generator, count: int, length: int, split: str = "train") -> dict[str, np.ndarray]:
        stream = self.streams["train" if split == "train" else "eval"]
        if len(stream) <= length:
            raise ConfigError(f"the {split!r} part of the text files has {len(stream)} tokens, fewer than one "
                              f"document of {length}: add text or lower SpanCorruption.length")
        starts = rng.integers(0, len(stream) - length, size=count)
        return {"words": stream[starts[:, None] + np.arange(length)[None, :]]}
