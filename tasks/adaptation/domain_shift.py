"""Source and target domains with a controllable shift, and optional real intermediate domains.

Gradual domain adaptation needs labelled source data, unlabelled target data and (for the
Kumar et al. setting) unlabelled domains in between. Every family here places its domains on a
line: the source at t = 0, intermediate k of n at t = k / (n + 1), the target at t = 1, and
interpolates the shift parameters (rotation angles, colour, scale, blur) along it.
"""
from __future__ import annotations

from typing import Sequence

import gin
import numpy as np

from engine.errors import require, require_int, require_interval
from tasks.common.arrays import ArrayClassificationTask
from tasks.images.sources import shapes
from tasks.images.sources.digits import digits
from tasks.images.sources.transforms import rotate

SOURCE, TARGET = "source", "target"
VALIDATION = "target_validation"  # labelled target examples for model selection, disjoint from the test set
Arrays = dict[str, np.ndarray]


def domain_names(intermediate_domains: int) -> list[str]:
    """'source', 'intermediate_1', ..., 'intermediate_n', 'target', in the order of the shift."""
    return [SOURCE, *(f"intermediate_{k}" for k in range(1, intermediate_domains + 1)), TARGET]


def domain_positions(intermediate_domains: int) -> list[float]:
    """Where each domain sits between source (0) and target (1): evenly spaced."""
    return [k / (intermediate_domains + 1) for k in range(intermediate_domains + 2)]


def interpolate(source: Sequence[float], target: Sequence[float], position: float) -> np.ndarray:
    return (1 - position) * np.asarray(source, dtype=np.float64) + position * np.asarray(target, dtype=np.float64)


def validation_rng(data_seed: int) -> np.random.Generator:
    """A stream of its own for the validation split, so adding one changes no other draw."""
    return np.random.default_rng([data_seed, 1])


def split_off(arrays: Arrays, size: int, rng: np.random.Generator) -> tuple[Arrays, Arrays]:
    """(`size` examples chosen by `rng`, the rest), each in the original order."""
    order = rng.permutation(len(next(iter(arrays.values()))))
    chosen, rest = np.sort(order[:size]), np.sort(order[size:])
    return {k: v[chosen] for k, v in arrays.items()}, {k: v[rest] for k, v in arrays.items()}


class DomainShiftTask(ArrayClassificationTask):
    """Domains in shift order, each with a training pool and a held-out test set.

    `train` (the split plain `train` runs on) is the labelled pool of `train_domain`: 'source'
    for source-only training, 'target' for the target oracle. Every domain's test set is an
    evaluation split named after the domain. The adaptation programs read unlabelled pools
    through `unlabelled_pool`, so target labels never reach their training batches. With
    `validation_size > 0` a family adds `target_validation`: labelled target examples, disjoint
    from the target's test set, so a study selects on them and reads the test set once.
    """

    def __init__(self, *, train_domain: str) -> None:
        super().__init__()
        self.train_domain = train_domain
        self.pools: dict[str, Arrays] = {}

    def _set_domains(self, pools: dict[str, Arrays], tests: dict[str, Arrays],
                     validation: Arrays | None = None) -> None:
        """Install the domains (in shift order); called once by each subclass's constructor."""
        require(self.train_domain in pools, f"{type(self).__name__}.train_domain = {self.train_domain!r} "
                f"is not a domain; choose from {list(pools)}")
        self.pools = pools
        self.splits = {"train": pools[self.train_domain], **tests}
        if validation is not None:
            self.splits[VALIDATION] = validation

    @property
    def domains(self) -> list[str]:
        return list(self.pools)

    @property
    def intermediate_domains(self) -> list[str]:
        return self.domains[1:-1]

    @property
    def eval_splits(self) -> list[str]:
        """One evaluation split per domain, in shift order, then the target validation split if any."""
        return self.domains + ([VALIDATION] if VALIDATION in self.splits else [])

    def unlabelled_pool(self, domain: str) -> Arrays:
        """The training inputs of `domain` without their labels."""
        require(domain in self.pools, f"{type(self).__name__} has no domain {domain!r}; it has {self.domains}")
        return {self.input_key: self.pools[domain][self.input_key]}

    def labelled_pool(self, domain: str) -> Arrays:
        """The training inputs and labels of a domain (the source, or an oracle's target)."""
        require(domain in self.pools, f"{type(self).__name__} has no domain {domain!r}; it has {self.domains}")
        return self.pools[domain]


@gin.configurable
class RotatedDigits(DomainShiftTask):
    """scikit-learn digits upsampled to `image_size` and rotated (degrees, counter-clockwise).

    Each domain rotates every image by an angle drawn uniformly from its range; the source and
    target pools (and each intermediate pool) are disjoint sets of training digits, while the
    test sets rotate the same held-out digits by each domain's angles. The pools use all but 2
    training digits, so `validation_size` target digits come out of the target's test set (which
    shrinks by as many; the other domains' test sets keep every held-out digit).
    """

    def __init__(self, *, source_angles: tuple[float, float] = (0.0, 5.0),
                 target_angles: tuple[float, float] = (55.0, 60.0), intermediate_domains: int = 4,
                 pool_size: int = 450, intermediate_pool_size: int = 89, image_size: int = 16,
                 train_domain: str = SOURCE, validation_size: int = 0, data_seed: int = 0) -> None:
        super().__init__(train_domain=train_domain)
        source = require_interval(source_angles, "RotatedDigits.source_angles", integer=False)
        target = require_interval(target_angles, "RotatedDigits.target_angles", integer=False)
        count = require_int(intermediate_domains, "RotatedDigits.intermediate_domains", low=0)
        require_int(pool_size, "RotatedDigits.pool_size", low=1)
        require_int(intermediate_pool_size, "RotatedDigits.intermediate_pool_size", low=1)
        require_int(image_size, "RotatedDigits.image_size", low=8)
        train_images, train_labels = digits("train", size=image_size)
        test_images, test_labels = digits("test", size=image_size)
        sizes = [pool_size, *[intermediate_pool_size] * count, pool_size]
        require(sum(sizes) <= len(train_labels),
                f"RotatedDigits needs {sum(sizes)} training digits (2 x pool_size + intermediate_domains x "
                f"intermediate_pool_size) but only {len(train_labels)} exist; lower the pool sizes")
        rng = np.random.default_rng(data_seed)
        order = rng.permutation(len(train_labels))
        # Source and target take the first and second blocks whatever the number of
        # intermediates, so every method sees the same source and target pools.
        starts = {SOURCE: 0, TARGET: pool_size}
        offset = 2 * pool_size
        names = domain_names(count)
        for name in names[1:-1]:
            starts[name], offset = offset, offset + intermediate_pool_size
        pools, tests = {}, {}
        for name, position, size in zip(names, domain_positions(count), sizes):
            lo, hi = interpolate(source, target, position)
            chosen = order[starts[name]:starts[name] + size]
            pools[name] = {"image": rotate(train_images[chosen], rng.uniform(lo, hi, size)),
                           "label": train_labels[chosen]}
            tests[name] = {"image": rotate(test_images, rng.uniform(lo, hi, len(test_labels))),
                           "label": test_labels}
        validation = None
        if require_int(validation_size, "RotatedDigits.validation_size", low=0):
            require(validation_size < len(test_labels), f"RotatedDigits.validation_size must leave target test "
                    f"digits: there are {len(test_labels)} held-out digits, got {validation_size}")
            validation, tests[TARGET] = split_off(tests[TARGET], validation_size, validation_rng(data_seed))
        self._set_domains(pools, tests, validation)
        self.num_classes = 10


@gin.configurable
class RotatedMoons(DomainShiftTask):
    """scikit-learn two-moons (2-d points, 2 classes), rotated about the data's centre.

    The classic toy for gradual self-training: a linear-ish boundary that a large rotation
    breaks, and that a chain of smaller rotations can follow.
    """

    input_key = "inputs"

    def __init__(self, *, source_angles: tuple[float, float] = (0.0, 5.0),
                 target_angles: tuple[float, float] = (70.0, 80.0), intermediate_domains: int = 4,
                 pool_size: int = 500, intermediate_pool_size: int = 500, test_size: int = 1000,
                 noise: float = 0.1, train_domain: str = SOURCE, validation_size: int = 0,
                 data_seed: int = 0) -> None:
        super().__init__(train_domain=train_domain)
        from sklearn.datasets import make_moons
        source = require_interval(source_angles, "RotatedMoons.source_angles", integer=False)
        target = require_interval(target_angles, "RotatedMoons.target_angles", integer=False)
        count = require_int(intermediate_domains, "RotatedMoons.intermediate_domains", low=0)
        for name, value in (("pool_size", pool_size), ("intermediate_pool_size", intermediate_pool_size),
                            ("test_size", test_size)):
            require_int(value, f"RotatedMoons.{name}", low=2)
        require(noise >= 0, f"RotatedMoons.noise must be >= 0, got {noise!r}")
        names = domain_names(count)
        rng = np.random.default_rng(data_seed)
        pools, tests = {}, {}
        for name, position in zip(names, domain_positions(count)):
            lo, hi = interpolate(source, target, position)
            size = pool_size if name in (SOURCE, TARGET) else intermediate_pool_size
            for where, n in ((pools, size), (tests, test_size)):
                points, labels = make_moons(n, noise=noise, random_state=int(rng.integers(2**31)))
                where[name] = {"inputs": self._rotate(points, rng.uniform(lo, hi, n)),
                               "label": labels.astype(np.int64)}
        validation = None
        if require_int(validation_size, "RotatedMoons.validation_size", low=0):
            extra = validation_rng(data_seed)  # fresh target examples, drawn as the target's test set is
            lo, hi = interpolate(source, target, 1.0)
            points, labels = make_moons(validation_size, noise=noise, random_state=int(extra.integers(2**31)))
            validation = {"inputs": self._rotate(points, extra.uniform(lo, hi, validation_size)),
                          "label": labels.astype(np.int64)}
        self._set_domains(pools, tests, validation)
        self.num_classes = 2

    @staticmethod
    def _rotate(points: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
        centred = points - np.array([0.5, 0.25])  # the centre of make_moons' two half-circles
        angles = np.deg2rad(angles_deg)
        cos, sin = np.cos(angles), np.sin(angles)
        x, y = centred[:, 0], centred[:, 1]
        return np.stack([cos * x - sin * y, sin * x + cos * y], axis=1).astype(np.float32)


@gin.configurable
class ShiftedShapes(DomainShiftTask):
    """Procedural coloured shapes (label = shape, 6 classes) under colour, scale and blur shifts.

    The source draws shapes at `source_scale` with the palette unchanged and no blur; the
    target shrinks them to `target_scale`, adds `target_color_shift` to every colour and
    blurs with `target_blur` pixels; intermediate domains interpolate all three.
    """

    def __init__(self, *, image_size: int = 12, source_scale: tuple[float, float] = (0.3, 0.42),
                 target_scale: tuple[float, float] = (0.2, 0.29), source_blur: float = 0.0,
                 target_blur: float = 0.7, source_color_shift: Sequence[float] = (0.0, 0.0, 0.0),
                 target_color_shift: Sequence[float] = (-0.35, 0.2, 0.2), intermediate_domains: int = 4,
                 pool_size: int = 600, intermediate_pool_size: int = 600, test_size: int = 600,
                 train_domain: str = SOURCE, validation_size: int = 0, data_seed: int = 0) -> None:
        super().__init__(train_domain=train_domain)
        source = require_interval(source_scale, "ShiftedShapes.source_scale", integer=False)
        target = require_interval(target_scale, "ShiftedShapes.target_scale", integer=False)
        require(0 < min(source + target) and max(source + target) <= 0.5,
                "ShiftedShapes scales are half-sizes as fractions of the width: keep them in (0, 0.5]")
        require(min(source_blur, target_blur) >= 0, "ShiftedShapes blurs are Gaussian sigmas in pixels: >= 0")
        require(len(source_color_shift) == 3 and len(target_color_shift) == 3,
                "ShiftedShapes colour shifts are (red, green, blue) offsets")
        require_int(image_size, "ShiftedShapes.image_size", low=8)
        count = require_int(intermediate_domains, "ShiftedShapes.intermediate_domains", low=0)
        for name, value in (("pool_size", pool_size), ("intermediate_pool_size", intermediate_pool_size),
                            ("test_size", test_size)):
            require_int(value, f"ShiftedShapes.{name}", low=1)
        rng = np.random.default_rng(data_seed)
        pools, tests = {}, {}
        for name, position in zip(domain_names(count), domain_positions(count)):
            scale = tuple(interpolate(source, target, position))
            blur = float(interpolate([source_blur], [target_blur], position)[0])
            colour = interpolate(source_color_shift, target_color_shift, position)
            size = pool_size if name in (SOURCE, TARGET) else intermediate_pool_size
            for where, n in ((pools, size), (tests, test_size)):
                scene = shapes.sample_scenes(rng, n, textures=1, scale=scale)
                images = shapes.render(scene, image_size, color_shift=colour)
                where[name] = {"image": shapes.blur(images, blur), "label": scene.shape[:, 0].astype(np.int64)}
        validation = None
        if require_int(validation_size, "ShiftedShapes.validation_size", low=0):
            extra = validation_rng(data_seed)  # fresh target examples, drawn as the target's test set is
            scene = shapes.sample_scenes(extra, validation_size, textures=1, scale=tuple(interpolate(source, target, 1.0)))
            images = shapes.render(scene, image_size, color_shift=interpolate(source_color_shift, target_color_shift, 1.0))
            validation = {"image": shapes.blur(images, float(interpolate([source_blur], [target_blur], 1.0)[0])),
                          "label": scene.shape[:, 0].astype(np.int64)}
        self._set_domains(pools, tests, validation)
        self.num_classes = len(shapes.SHAPES)
