"""Downstream few-shot tasks for the saturation study, near and far from the shapes upstream task:
a pool of labelled images the shots are drawn from and a test set, for each of

- coarse shape (near): the upstream images, labelled only by shape (super-classes);
- texture frequency (far): how fine an object's texture is, which no upstream label names;
- object count (far): how many objects a scene holds (upstream scenes hold one);
- noise level (far): how much pixel noise was added (upstream images are clean);
- digits (far, another domain): scikit-learn's handwritten digits;
- image files (real data): an image folder or CIFAR binary batches.

Sources are balanced (the same number of examples per class) and a pure function of their
settings; the images are built once per process and shared by every run of a sweep.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Sequence

import gin
import numpy as np

from engine.data import split_id
from engine.errors import require, require_int
from tasks.images.sources.digits import digits
from tasks.images.sources.labelled_shapes import Factors, binned_scenes
from tasks.images.sources.shapes import render, sample_scenes
from tasks.images.sources.transforms import resize

_CACHE: dict[tuple, "FewShotData"] = {}


@dataclasses.dataclass(frozen=True)
class FewShotData:
    """Images (N, C, H, W) float32 in [0, 1] with integer labels in [0, num_classes)."""

    num_classes: int
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


class FewShotSource(abc.ABC):
    """A downstream task: subclasses set `name`, `distance` ('near' / 'far' from upstream),
    `num_classes`, and implement `split(part, per_class, image_size)`."""

    name = "source"
    distance = "far"
    num_classes = 2

    def __init__(self, *, pool_per_class: int = 40, test_per_class: int = 100, seed: int = 0) -> None:
        require_int(pool_per_class, f"{type(self).__name__}.pool_per_class", low=1)
        require_int(test_per_class, f"{type(self).__name__}.test_per_class", low=1)
        self.pool_per_class, self.test_per_class, self.seed = pool_per_class, test_per_class, seed

    def settings(self) -> tuple:
        """Everything that shapes the images (the cache key)."""
        return tuple(sorted((k, v if not isinstance(v, list) else tuple(v)) for k, v in vars(self).items()
                            if k != "num_classes"))

    @abc.abstractmethod
    def split(self, part: str, per_class: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Images (N, C, size, size) and labels of the 'pool' or 'test' part."""

    def load(self, image_size: int, channels: int = 3) -> FewShotData:
        key = (type(self).__name__, self.settings(), image_size, channels)
        if key not in _CACHE:
            train_x, train_y = self.split("pool", self.pool_per_class, image_size)
            test_x, test_y = self.split("test", self.test_per_class, image_size)
            _CACHE[key] = FewShotData(self.num_classes, match_channels(train_x, channels), train_y,
                                      match_channels(test_x, channels), test_y)
        return _CACHE[key]


class GeneratedFewShotSource(FewShotSource):
    """A procedural downstream task: implement `images(rng, labels, image_size)`; each part is
    drawn from its own seeded stream, so pool and test never share an image."""

    @abc.abstractmethod
    def images(self, rng: np.random.Generator, labels: np.ndarray, image_size: int) -> np.ndarray:
        """Float images (N, 3, size, size) in [0, 1] showing the given labels."""

    def split(self, part: str, per_class: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.repeat(np.arange(self.num_classes), per_class)
        rng = np.random.default_rng([self.seed, split_id(self.name), split_id(part)])
        return self.images(rng, labels, image_size).astype(np.float32), labels.astype(np.int64)


def take_per_class(labels: np.ndarray, per_class: int, seed: Sequence[int]) -> np.ndarray:
    """Indices of up to `per_class` examples of every class, drawn by a seeded permutation and
    grouped by class in label order."""
    order = np.random.default_rng(list(seed)).permutation(len(labels))
    return np.concatenate([order[labels[order] == c][:per_class] for c in range(int(labels.max()) + 1)])


def match_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Grey -> repeated colour channels, colour -> mean grey; others must already match."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1:
        return np.repeat(images, channels, axis=1)
    if channels == 1:
        return images.mean(axis=1, keepdims=True)
    raise ValueError(f"cannot turn {have}-channel images into {channels} channels")


def _pair(owner: str, name: str, value: Sequence[float]) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    require(0 < low <= high < 0.5, f"{owner}.{name} must satisfy 0 < low <= high < 0.5, got {value!r}")
    return low, high


@gin.configurable
class CoarseShapes(GeneratedFewShotSource):
    """Near: upstream-like images (same factors and rendering), labelled by shape alone."""

    name, distance = "coarse_shape", "near"

    def __init__(self, *, scale: Sequence[float] = (0.2, 0.32), frequency: float = 2.0, positions: int = 2,
                 **common: Any) -> None:
        super().__init__(**common)
        self.scale, self.frequency = _pair("CoarseShapes", "scale", scale), float(frequency)
        self.factors = Factors(positions=positions)
        self.factors.validate("CoarseShapes")
        self.num_classes = self.factors.shapes

    def images(self, rng, labels, image_size):
        scene, _ = binned_scenes(rng, len(labels), self.factors, scale=self.scale)
        scene.shape[:, 0] = labels
        return render(scene, image_size, frequency=self.frequency)


@gin.configurable
class TextureFrequency(GeneratedFewShotSource):
    """Far: which of `frequencies` an object's (non-solid) texture is drawn at. Two levels far
    apart and large objects: at 16x16 finer steps are not linearly readable even from pixels."""

    name = "texture_frequency"

    def __init__(self, *, frequencies: Sequence[float] = (1.0, 4.0), scale: Sequence[float] = (0.38, 0.46),
                 **common: Any) -> None:
        super().__init__(**common)
        require(len(frequencies) >= 2 and all(f > 0 for f in frequencies) and len(set(frequencies)) == len(frequencies),
                f"TextureFrequency.frequencies must be >= 2 distinct positive values, got {frequencies!r}")
        self.frequencies, self.scale = tuple(float(f) for f in frequencies), _pair("TextureFrequency", "scale", scale)
        self.num_classes = len(self.frequencies)

    def images(self, rng, labels, image_size):
        scene = sample_scenes(rng, len(labels), scale=self.scale)
        scene.texture[:, 0] = rng.integers(1, 4, size=len(labels))  # stripes, checker or dots
        out = np.empty((len(labels), 3, image_size, image_size), dtype=np.float32)
        for label, frequency in enumerate(self.frequencies):
            chosen = labels == label
            out[chosen] = render(_subset(scene, chosen), image_size, frequency=frequency)
        return out


@gin.configurable
class ObjectCount(GeneratedFewShotSource):
    """Far: how many objects (1..max_count) a scene holds; objects sit in distinct cells of a
    2x2 grid so they never overlap and the count is always visible."""

    name = "object_count"

    def __init__(self, *, max_count: int = 4, scale: Sequence[float] = (0.1, 0.16), **common: Any) -> None:
        super().__init__(**common)
        require_int(max_count, "ObjectCount.max_count", low=2, high=4, hint="it counts the cells of a 2x2 grid")
        self.max_count, self.scale = max_count, _pair("ObjectCount", "scale", scale)
        self.num_classes = max_count

    def images(self, rng, labels, image_size):
        n = len(labels)
        scene = sample_scenes(rng, n, max_objects=4, min_objects=4, scale=self.scale)
        cells = np.argsort(rng.random((n, 4)), axis=1)  # a random order of the four cells
        scene.x[:] = (cells % 2 + rng.uniform(0.3, 0.7, (n, 4))) / 2
        scene.y[:] = (cells // 2 + rng.uniform(0.3, 0.7, (n, 4))) / 2
        absent = np.arange(4)[None, :] > labels[:, None]  # keep label + 1 objects
        for attribute in (scene.shape, scene.color, scene.texture):
            attribute[absent] = -1
        scene.count[:] = labels + 1
        return render(scene, image_size, frequency=2.0)


@gin.configurable
class NoiseLevel(GeneratedFewShotSource):
    """Far: which standard deviation of Gaussian pixel noise was added to an upstream-like image."""

    name = "noise_level"

    def __init__(self, *, sigmas: Sequence[float] = (0.0, 0.08, 0.16, 0.24), scale: Sequence[float] = (0.2, 0.32),
                 **common: Any) -> None:
        super().__init__(**common)
        require(len(sigmas) >= 2 and all(s >= 0 for s in sigmas) and len(set(sigmas)) == len(sigmas),
                f"NoiseLevel.sigmas must be >= 2 distinct non-negative values, got {sigmas!r}")
        self.sigmas, self.scale = tuple(float(s) for s in sigmas), _pair("NoiseLevel", "scale", scale)
        self.num_classes = len(self.sigmas)

    def images(self, rng, labels, image_size):
        scene, _ = binned_scenes(rng, len(labels), Factors(), scale=self.scale)
        clean = render(scene, image_size, frequency=2.0)
        sigma = np.asarray(self.sigmas, dtype=np.float32)[labels][:, None, None, None]
        return np.clip(clean + sigma * rng.standard_normal(clean.shape).astype(np.float32), 0.0, 1.0)


@gin.configurable
class DigitsFewShot(FewShotSource):
    """Far, another domain: scikit-learn's digits (grey, 10 classes) at the model's image size.
    The pool comes from the digits' train part, the test set from their test part (up to
    `test_per_class` each: the test part has 46-62 per class)."""

    name = "digits"
    num_classes = 10

    def split(self, part, per_class, image_size):
        images, labels = digits("train" if part == "pool" else "test", size=image_size)
        chosen = take_per_class(labels, per_class, [self.seed, split_id(part)])
        return images[chosen].astype(np.float32), labels[chosen].astype(np.int64)


def _subset(scene, chosen: np.ndarray):
    return dataclasses.replace(scene, **{f.name: getattr(scene, f.name)[chosen] for f in dataclasses.fields(scene)})


@gin.configurable
class FilesFewShot(FewShotSource):
    """Real downstream data: an image folder (one sub-folder per class) or CIFAR binary batches,
    read with tasks.images.sources.files; the pool and the test set come from `pool_path` / `test_path`,
    which must hold the same classes. Unreadable files, bad labels and mixed image sizes are
    ConfigErrors naming the file, raised when the evaluator loads its sources, before training."""

    distance = "far"

    def __init__(self, *, name: str = gin.REQUIRED, pool_path: str = gin.REQUIRED, test_path: str = gin.REQUIRED,
                 file_format: str = "folder", **common: Any) -> None:
        super().__init__(**common)
        from tasks.images.sources.files import check_format
        check_format(file_format, "FilesFewShot.file_format")
        self.name, self.pool_path, self.test_path, self.file_format = name, pool_path, test_path, file_format
        self.num_classes = 0  # known once read

    def split(self, part, per_class, image_size):
        from tasks.images.sources.files import read_images, require_same_classes
        images, labels, classes = read_images(self.pool_path if part == "pool" else self.test_path, self.file_format)
        other = read_images(self.test_path if part == "pool" else self.pool_path, self.file_format)[2]  # read once: cached
        require_same_classes(f"FilesFewShot {self.name!r}", (self.pool_path, classes if part == "pool" else other),
                             (self.test_path, other if part == "pool" else classes))
        self.num_classes = len(classes)
        chosen = take_per_class(labels, per_class, [self.seed, split_id(part)])
        pixels = images[chosen].astype(np.float32) / 255.0
        if pixels.shape[-1] != image_size:
            pixels = resize(pixels, image_size)
        return pixels, labels[chosen].astype(np.int64)
