"""What the LRA tasks share: compact per-split arrays decoded into tokens and padding masks
(masks come from stored lengths, never from `tokens > 0`, which would hide black pixels),
where the data comes from (released files, a generator, or a named stand-in), and a disk cache.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from engine import summaries
from engine.errors import ConfigError, require_int
from tasks.common.arrays import ArrayClassificationTask
from tasks.common.cache import Progress, announce_cache, cache_root

log = logging.getLogger("tasks.lra")

#: Root of the extracted `lra_release` archive (and of aclImdb / cifar-10-batches-bin), used
#: when a task's `data_dir` is not given.
DATA_ENV = "LRA_DATA"


def release_dir(data_dir: str | None, default_subdir: str, holds_data: Callable[[str], bool],
                what: str, expected: Sequence[str] = ()) -> str | None:
    """The folder of released files to read, or None to fall back to generated data.

    An explicit `data_dir` must hold the files (a ConfigError says so, and names those of
    `expected` that are absent); without one, `$LRA_DATA/<default_subdir>` is used when it
    holds them.
    """
    if data_dir:
        folder = os.path.expanduser(data_dir)
        if not holds_data(folder):
            absent = [name for name in expected if not os.path.isfile(os.path.join(folder, name))]
            raise ConfigError(f"{what}: {data_dir!r} does not hold the expected files"
                              + (f" (missing: {', '.join(absent)})" if absent else ""))
        return folder
    root = os.environ.get(DATA_ENV)
    if root and holds_data(os.path.join(root, default_subdir)):
        return os.path.join(root, default_subdir)
    return None


def cache_dir(explicit: str | None, name: str, params: Mapping[str, Any]) -> str:
    """A folder for generated data, named by a hash of everything that shapes it."""
    digest = hashlib.sha1(json.dumps(dict(params), sort_keys=True, default=str).encode()).hexdigest()[:12]
    return os.path.join(cache_root(explicit), "lra", f"{name}-{digest}")


def cached_arrays(folder: str, build: Callable[[], Mapping[str, np.ndarray]],
                  what: str = "generated data") -> dict[str, np.ndarray]:
    """Arrays saved as `<folder>/<name>.npy`, built once; read back memory-mapped copy-on-write
    (writable, so torch shares them without a warning, and large caches load lazily).

    The folder appears atomically (built beside it, then renamed), so concurrent ranks or an
    interrupted run never read a half-written cache. A build that took more than a few seconds
    is followed by a line naming `what`, the folder and its size.
    """
    if not os.path.isdir(folder):
        started = time.monotonic()
        arrays = build()
        staging = f"{folder}.tmp-{os.getpid()}"
        os.makedirs(staging, exist_ok=True)
        for name, array in arrays.items():
            np.save(os.path.join(staging, f"{name}.npy"), np.ascontiguousarray(array))
        try:
            os.rename(staging, folder)
        except OSError:  # another process finished first: theirs is identical
            shutil.rmtree(staging, ignore_errors=True)
        announce_cache(folder, started, what)
    return {name[:-4]: np.load(os.path.join(folder, name), mmap_mode="c")
            for name in sorted(os.listdir(folder)) if name.endswith(".npy")}


def pad_rows(rows: list[np.ndarray], width: int, dtype: Any = np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """Variable-length rows -> (zero-padded (n, width) array, lengths); rows must fit."""
    out = np.zeros((len(rows), width), dtype=dtype)
    lengths = np.zeros(len(rows), dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
        lengths[i] = len(row)
    return out, lengths


def byte_rows(texts: list[bytes], length: int) -> tuple[np.ndarray, np.ndarray]:
    """Byte strings -> (uint8 (n, length) zero-padded, lengths), truncated to `length` bytes."""
    return pad_rows([np.frombuffer(text[:length], dtype=np.uint8) for text in texts], length)


def split_by_key(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """{'train.tokens': a, 'train.label': b, ...} -> {'train': {'tokens': a, 'label': b}, ...}."""
    splits: dict[str, dict[str, np.ndarray]] = {}
    for key, array in arrays.items():
        split, field = key.split(".", 1)
        splits.setdefault(split, {})[field] = array
    return splits


class SequenceTask(ArrayClassificationTask):
    """Classification of token sequences held as compact arrays per split.

    A split holds `tokens` (uint8: token ids, bytes or pixels), `label`, and where sequences
    have different lengths, `length`; pair tasks add `tokens2` / `length2`. `forward` decodes
    a batch on the model's device: ids = stored value + `token_offset` at real positions, 0 at
    padding, and the padding mask from the lengths. Splits: 'train', 'eval', 'test'.
    """

    input_key = "tokens"
    token_offset = 0
    pair = False

    def __init__(self) -> None:
        super().__init__()
        self.source = ""

    def describe(self, source: str, *, stand_in: bool = False) -> None:
        """Record (and, for stand-ins, announce) where the data comes from."""
        self.source = source
        if stand_in:
            log.warning("%s: %s", type(self).__name__, source)
        else:
            log.info("%s: %s", type(self).__name__, source)

    def use_stand_in(self, make: Callable[[np.random.Generator, int, Progress], dict[str, np.ndarray]],
                     sizes: Mapping[str, int], seed: int, description: str) -> None:
        """Fill every split with generated stand-in data (`make(rng, count, progress)`, which
        counts its examples on `progress`: full-size Retrieval takes minutes) and announce it."""
        rng = np.random.default_rng(seed)
        with Progress(f"{type(self).__name__}: generating stand-in data", sum(sizes.values()),
                      unit="examples") as progress:
            for split, count in sizes.items():
                self.splits[split] = make(rng, count, progress)
        self.describe(f"STAND-IN DATA: {description}", stand_in=True)

    def decode(self, batch: Mapping[str, Any], suffix: str = "") -> tuple[torch.Tensor, torch.Tensor | None]:
        tokens = batch[f"tokens{suffix}"].long()
        lengths = batch.get(f"length{suffix}")
        if lengths is None:
            return tokens + self.token_offset, None
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]
        return torch.where(mask, tokens + self.token_offset, torch.zeros_like(tokens)), mask

    def forward(self, model: torch.nn.Module, batch: Mapping[str, Any]) -> Any:
        tokens, mask = self.decode(batch)
        if self.pair:
            tokens2, mask2 = self.decode(batch, "2")
            return model(tokens, mask, tokens2, mask2)
        return model(tokens, mask)

    def tokens(self, batch: Mapping[str, Any]) -> int:
        total = 0
        for suffix in ("", "2") if self.pair else ("",):
            lengths = batch.get(f"length{suffix}")
            total += int(lengths.sum()) if lengths is not None else int(batch[f"tokens{suffix}"].numel())
        return total

    def summarize(self, split: str, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"data": summaries.Text(self.source)} if self.source else {}


class ByteSequenceTask(SequenceTask):
    """Byte-level text (Text, Retrieval): stored UTF-8 bytes become ids byte + 1, so 0 stays
    padding; vocabulary 257 (tfds ByteTextEncoder, as in LRA)."""

    token_offset = 1
    vocab_size = 257

    def __init__(self, max_length: int) -> None:
        super().__init__()
        self.max_length = require_int(max_length, f"{type(self).__name__}.max_length", low=1)

