"""The upstream task of the saturation study: hundreds of procedural classes (shape x colour x
texture x position bin), rendered at start-up from seeds, with a data-fraction knob.

The full training set is `num_examples` images; `data_fraction` keeps its first part (a prefix,
so smaller fractions are nested in larger ones, like the JFT subsets of the paper), and training
runs as many epochs over it as `train.steps * train.batch_size` allows. The eval split is a
fixed held-out set from its own seed stream, whatever the fraction; `validation_examples > 0`
adds a 'validation' split from a third stream (a study's selection split, disjoint from eval).
"""
from __future__ import annotations

import functools
import gin
import numpy as np

from engine.data import split_id
from engine.errors import require, require_int
from tasks.images.byte_images import ByteImageClassification
from tasks.images.sources.labelled_shapes import Factors, chunked, labelled_images


@functools.lru_cache(maxsize=8)
def upstream_arrays(split: str, n: int, factors: Factors, image_size: int, scale: tuple[float, float],
                    frequency: float, data_seed: int) -> dict[str, np.ndarray]:
    """The first `n` examples of `split` (cached: a sweep builds the same set many times)."""
    make = functools.partial(labelled_images, factors=factors, image_size=image_size, scale=scale,
                             frequency=frequency)
    arrays = chunked(make, (data_seed, split_id(split)), n)
    return {"image": arrays["image"], "label": arrays["label"]}


@gin.configurable
class ShapesUpstream(ByteImageClassification):
    """Many-way classification of 16x16 (or any size) single-shape images; splits 'train', 'eval'
    (and 'validation' when `validation_examples > 0`).

    With the defaults: 6 shapes x 8 colours x 4 textures x 2 position bins = 384 classes.
    `num_classes`, when given, must equal that product (bind it to the model's NUM_CLASSES macro
    so a change of factors cannot silently disagree with the head).
    """

    def __init__(self, *, image_size: int = 16, num_examples: int = 20000, data_fraction: float = 1.0,
                 eval_examples: int = 2000, validation_examples: int = 0, shapes: int = 6, colors: int = 8,
                 textures: int = 4, positions: int = 2, scale: tuple[float, float] = (0.2, 0.32), frequency: float = 2.0,
                 data_seed: int = 0, num_classes: int | None = None) -> None:
        super().__init__()
        factors = Factors(shapes=shapes, colors=colors, textures=textures, positions=positions)
        factors.validate("ShapesUpstream")
        require_int(image_size, "ShapesUpstream.image_size", low=8)
        require(0 < data_fraction <= 1, f"ShapesUpstream.data_fraction must be in (0, 1], got {data_fraction!r}")
        require(num_examples >= 1 and eval_examples >= 1,
                f"ShapesUpstream.num_examples and eval_examples must be >= 1, got {num_examples}, {eval_examples}")
        require_int(validation_examples, "ShapesUpstream.validation_examples", low=0)
        low, high = scale
        require(0 < low <= high < 0.5, f"ShapesUpstream.scale must satisfy 0 < low <= high < 0.5, got {scale!r}")
        require(frequency > 0, f"ShapesUpstream.frequency must be > 0, got {frequency!r}")
        require(num_classes is None or num_classes == factors.num_classes,
                f"ShapesUpstream.num_classes = {num_classes} but {shapes} shapes x {colors} colours x "
                f"{textures} textures x {positions} positions make {factors.num_classes} classes")
        self.factors = factors
        self.num_classes = factors.num_classes
        self.train_examples = max(1, int(round(data_fraction * num_examples)))
        common = (factors, image_size, (float(low), float(high)), float(frequency), data_seed)
        self.splits = {"train": upstream_arrays("train", self.train_examples, *common),
                       "eval": upstream_arrays("eval", eval_examples, *common)}
        if validation_examples:
            self.splits["validation"] = upstream_arrays("validation", validation_examples, *common)
