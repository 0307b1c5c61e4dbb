"""Pathfinder and Path-X: do the two circles lie on one dashed curve? Each pixel is a token.

Images come from the released `pathfinder{32,128}/<difficulty>/{imgs,metadata}` layout when
present, else from our port of the generator (tasks/lra/pathfinder_curves.py), cached on disk
as uint8 arrays. There is no padding: black pixels are tokens like any other, never masked.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import glob
import os
from typing import Any

import gin
import numpy as np

from engine import summaries
from engine.errors import ConfigError
from engine.file_errors import file_error, parse_label, reading
from tasks.common.cache import Progress
from tasks.images.sources.files import read_image
from tasks.lra import pathfinder_curves
from tasks.lra.base import SequenceTask, cache_dir, cached_arrays, log, release_dir, split_by_key

#: Released folder of each difficulty (LRA's paper data is `hard`; Path-X = pathfinder128 hard).
RELEASED_LEVELS = {"easy": "curv_baseline", "intermediate": "curv_contour_length_9",
                   "hard": "curv_contour_length_14"}
NUMPY_MAGIC = b"\x93NUMPY"


def read_metadata(path: str) -> list[tuple[str, str, int]]:
    """(image subfolder, file name, label) rows of one `metadata/*.npy` file.

    The released files are text despite their name (one space-separated row per image:
    subfolder, file, index, label, ...); a real .npy array of such rows is read as well. A row
    with fewer than 4 fields or a label other than 0 / 1 is a ConfigError naming the file and
    line (record, for an array); so is a file that cannot be read or decoded.
    """
    with reading(path), open(path, "rb") as handle:
        raw = handle.read()
    with reading(path):
        if raw.startswith(NUMPY_MAGIC):
            rows = [(None, i, [str(v) for v in row]) for i, row in enumerate(np.load(path, allow_pickle=False))]
        else:
            rows = [(number, None, line.split()) for number, line in enumerate(raw.decode("utf-8").splitlines(), 1)
                    if line.strip()]
    out = []
    for line, record, row in rows:
        if len(row) < 4:
            raise file_error(path, f"expected 'subfolder file index label ...', got {len(row)} field(s)",
                             line=line, record=record)
        out.append((row[0], row[1], parse_label(row[3], 2, path, line=line, record=record)))
    return out


def read_release(folder: str) -> tuple[np.ndarray, np.ndarray]:
    """All images of one released difficulty folder as (uint8 (n, H, W), labels).

    Missing, unreadable or empty images are skipped and counted in the log (the release has at
    least one empty PNG, curv_baseline/imgs/0/sample_172.png, which S4's loader blacklists); an
    image of another size than the first is a ConfigError naming both files.
    """
    rows = [row for meta in sorted(glob.glob(os.path.join(folder, "metadata", "*.npy")))
            for row in read_metadata(meta)]
    images, labels, skipped, first = [], [], 0, None
    with Progress("Pathfinder: reading released images", len(rows), unit="images") as progress:
        for subfolder, name, label in rows:
            progress.update()
            path = os.path.join(folder, subfolder, name)
            try:
                pixels = np.asarray(read_image(path, "L"), dtype=np.uint8)
            except ConfigError:
                skipped += 1
                continue
            if first is None:
                first = (path, pixels.shape)
            elif pixels.shape != first[1]:
                raise file_error(path, f"is {pixels.shape[1]}x{pixels.shape[0]} pixels but {first[0]} is "
                                 f"{first[1][1]}x{first[1][0]}; Pathfinder images must share one size")
            images.append(pixels)
            labels.append(label)
    if not images:
        raise ConfigError(f"no readable Pathfinder images listed in {folder}/metadata")
    if skipped:
        log.warning("Pathfinder: skipped %d missing or unreadable image(s) in %s", skipped, folder)
    return np.stack(images), np.array(labels, dtype=np.int64)


def _generate_chunk(args: tuple) -> tuple[np.ndarray, np.ndarray]:
    style, seed, start, count = args
    return pathfinder_curves.generate(style, seed, start, count)


def generate_images(style: pathfinder_curves.CurveStyle, seed: int, count: int,
                    workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Images 0 .. count - 1 of stream `seed`, drawn by `workers` processes (same result for any
    number), with progress (LRA's 200,000 images take hours on one process)."""
    chunk = 256
    jobs = [(style, seed, start, min(chunk, count - start)) for start in range(0, count, chunk)]
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(jobs) > 1:
            pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(workers))
            drawn = pool.map(_generate_chunk, jobs)  # in order, as they finish
        else:
            drawn = map(_generate_chunk, jobs)
        progress = stack.enter_context(Progress(f"Pathfinder: drawing {style.size}x{style.size} "
                                                "images", count, unit="images"))
        parts = []
        for part in drawn:
            parts.append(part)
            progress.update(len(part[1]))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@gin.configurable
class LRAPathfinder(SequenceTask):
    """Binary classification of `image_size`^2 pixel sequences (vocabulary 256).

    LRA: image_size 32, difficulty 'hard' (160,000 / 20,000 / 20,000 images); Path-X:
    image_size 128. image_size 16 is our CPU-sized variant (shorter curves, 256 tokens).
    Released data: `data_dir` (or $LRA_DATA/pathfinder<size>) holding the difficulty folders,
    or one difficulty folder itself; split 80 / 10 / 10 by a permutation seeded by `data_seed`.
    """

    def __init__(self, *, image_size: int = 32, difficulty: str = "hard", data_dir: str | None = None,
                 num_train: int = 160_000, num_eval: int = 20_000, num_test: int = 20_000, data_seed: int = 0,
                 cache: str | None = None, workers: int = 1) -> None:
        super().__init__()
        style = pathfinder_curves.curve_style(image_size, difficulty)  # validates both
        if min(num_train, num_eval, num_test) < 1:
            raise ConfigError("LRAPathfinder: num_train, num_eval and num_test must be positive")
        self.image_size = image_size
        self.vocab_size = 256
        self.num_classes = 2

        def difficulty_folder(path: str) -> str:
            nested = os.path.join(path, RELEASED_LEVELS[difficulty])
            return nested if os.path.isdir(os.path.join(nested, "metadata")) else path

        folder = release_dir(data_dir, f"pathfinder{image_size}",
                             lambda d: os.path.isdir(os.path.join(difficulty_folder(d), "metadata")),
                             f"LRAPathfinder.data_dir ({RELEASED_LEVELS[difficulty]}/metadata and imgs)")
        if folder:
            folder = difficulty_folder(folder)
            count = len(glob.glob(os.path.join(folder, "metadata", "*.npy")))
            params = dict(folder=os.path.abspath(folder), metadata_files=count, seed=data_seed, version=1)
            arrays = cached_arrays(cache_dir(cache, "pathfinder-release", params),
                                   lambda: self._split_release(*read_release(folder), data_seed),
                                   what="Pathfinder (released images)")
            self.splits = split_by_key(arrays)
            if self.splits["train"]["tokens"].shape[1] != image_size ** 2:
                raise ConfigError(f"the images in {folder} are not {image_size}x{image_size}; "
                                  "set LRAPathfinder.image_size to their size")
            self.describe(f"released Pathfinder images in {folder}")
            return
        sizes = {"train": num_train, "eval": num_eval, "test": num_test}
        params = dict(style=vars(style), sizes=sizes, seed=data_seed, version=pathfinder_curves.VERSION)

        def build() -> dict[str, np.ndarray]:
            images, labels = generate_images(style, data_seed, sum(sizes.values()), workers)
            out, start = {}, 0
            for split, n in sizes.items():
                out[f"{split}.tokens"] = images[start:start + n].reshape(n, -1)
                out[f"{split}.label"] = labels[start:start + n]
                start += n
            return out

        folder = cache_dir(cache, f"pathfinder{image_size}-{difficulty}", params)
        self.splits = split_by_key(cached_arrays(folder, build, what=f"Pathfinder {image_size}x{image_size}"))
        self.describe(f"generated Pathfinder {image_size}x{image_size} '{difficulty}' "
                      f"({style.contour_length} paddles per curve; {num_train:,} / {num_eval:,} / "
                      f"{num_test:,} images, seed {data_seed}), cached in {folder}")

    @staticmethod
    def _split_release(images: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        order = np.random.default_rng(seed).permutation(len(labels))
        cuts = [0, int(0.8 * len(order)), int(0.9 * len(order)), len(order)]
        out = {}
        for split, lo, hi in zip(("train", "eval", "test"), cuts, cuts[1:]):
            chosen = np.sort(order[lo:hi])
            out[f"{split}.tokens"] = images[chosen].reshape(len(chosen), -1)
            out[f"{split}.label"] = labels[chosen]
        return out

    def summarize(self, split: str, metrics: dict[str, Any]) -> dict[str, Any]:
        out = super().summarize(split, metrics)
        if split in self.splits:
            pixels = np.asarray(self.splits[split]["tokens"][:16], dtype=np.float32) / 255.0
            side = self.image_size
            out["examples"] = summaries.Image(summaries.image_grid(pixels.reshape(-1, side, side), columns=8))
        return out
