"""Local text files as a span-corruption corpus: bytes by default (256 words), or the pieces
of a local SentencePiece model when one is given. Nothing is downloaded.

The token stream of all files is split once: the last `eval_fraction` is the eval split.
Documents are windows at random offsets, a pure function of the batch generator's state.
"""
from __future__ import annotations

import glob
import os
from typing import Sequence

import gin
import numpy as np

from engine.errors import ConfigError, require


def read_texts(patterns: Sequence[str]) -> list[str]:
    paths = sorted({path for pattern in patterns for path in glob.glob(os.path.expanduser(pattern), recursive=True)
                    if os.path.isfile(path)})
    if not paths:
        raise ConfigError(f"TextFiles.paths = {list(patterns)!r} matches no file")
    texts = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as handle:
            texts.append(handle.read())
    return texts


def sentencepiece_ids(texts: Sequence[str], model_file: str) -> tuple[np.ndarray, int]:
    """Token ids of `texts` under a local SentencePiece model, and its vocabulary size."""
    if not os.path.isfile(model_file):
        raise ConfigError(f"TextFiles.sentencepiece_model: no such file {model_file!r}")
    try:
        import sentencepiece
    except ImportError:
        raise ConfigError("TextFiles.sentencepiece_model needs the sentencepiece package "
                          "(pip install sentencepiece), or leave it unset for bytes") from None
    processor = sentencepiece.SentencePieceProcessor(model_file=model_file)
    ids = [token for text in texts for token in processor.encode(text)]
    return np.asarray(ids, dtype=np.int64), int(processor.get_piece_size())


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
