"""Image-caption pairs generated locally for CLIP-style pre-training: procedural shapes (shape,
colour, texture, count, position) and tinted handwritten digits, each with a caption built from
its attributes, plus the retrieval and zero-shot metrics that say how good the towers are.

Every batch is a pure function of (seed, split, index), so a resumed run sees the same pairs.
"""
from __future__ import annotations

from typing import Any, Sequence

import gin
import numpy as np
import torch
import torch.nn.functional as F

from engine.data import device_of, generated_batches, unwrap
from engine.errors import require
from engine.task import Task
from tasks.images.sources.digits import digits
from tasks.images.sources.shapes import COLOR_NAMES, COLORS, SHAPES, TEXTURES, Scene, render
from tasks.images.sources.transforms import place_on_canvas, rotate
from tasks.prompting.shape_language import base_new_split, class_name, digit_caption, shape_caption, vocabulary

PALETTE = np.array(list(COLORS.values()), dtype=np.float32)


def render_objects(rng: np.random.Generator, shape: np.ndarray, colour: np.ndarray, texture: np.ndarray, *,
                   image_size: int, count: np.ndarray | None = None, scale: tuple[float, float] = (0.18, 0.3),
                   noise: float = 0.0, rotation: float = 0.0, color_shift: float = 0.0) -> tuple[np.ndarray, Scene]:
    """Images of `count` identical objects each (default one): (n, 3, S, S) in [0, 1] and the scene.

    `noise` adds Gaussian pixel noise, `rotation` turns each image by up to that many degrees
    and `color_shift` moves every colour by a random offset of that size: the domain shifts of
    downstream and out-of-distribution splits.
    """
    n = len(shape)
    count = np.ones(n, dtype=np.int64) if count is None else np.asarray(count)
    most = int(count.max())
    present = np.arange(most)[None, :] < count[:, None]
    size = rng.uniform(*scale, size=(n, most)) / np.where(count > 1, 1.5, 1.0)[:, None]
    x, y = rng.uniform(size, 1 - size), rng.uniform(size, 1 - size)

    def repeat(values: np.ndarray) -> np.ndarray:
        return np.where(present, np.asarray(values)[:, None], -1)

    scene = Scene(shape=repeat(shape), color=repeat(colour), texture=repeat(texture), x=x, y=y, scale=size, count=count)
    shift = rng.uniform(-color_shift, color_shift, size=3) if color_shift else None
    images = render(scene, image_size, color_shift=shift)
    if rotation:
        images = rotate(images, rng.uniform(-rotation, rotation, size=n))
    if noise:
        images = np.clip(images + rng.normal(0.0, noise, size=images.shape).astype(np.float32), 0.0, 1.0)
    return images.astype(np.float32), scene


def tinted_digits(rng: np.random.Generator, pool: tuple[np.ndarray, np.ndarray], n: int, colour: np.ndarray,
                  image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` digits drawn from `pool` (images (N, 1, s, s), labels), coloured and placed at random."""
    images, labels = pool
    chosen = rng.integers(0, len(labels), size=n)
    glyphs = images[chosen] * PALETTE[colour][:, :, None, None]
    corner = rng.integers(0, image_size - glyphs.shape[-1] + 1, size=(n, 2))
    return place_on_canvas(glyphs, image_size, corner), labels[chosen]


def recall_at_k(similarity: torch.Tensor, same: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Image->text and text->image recall@k of an (images, texts) similarity matrix.

    `same[i, j]` says text j is a correct answer for image i (identical captions count, so a
    duplicate caption is not a miss).
    """
    out = {}
    for name, sim, hit in (("image_to_text", similarity, same), ("text_to_image", similarity.t(), same.t())):
        order = sim.argsort(dim=1, descending=True)
        ranked_hits = torch.gather(hit, 1, order)
        for k in ks:
            out[f"{name}/recall@{k}"] = float(ranked_hits[:, :k].any(dim=1).float().mean())
    return out


@gin.configurable
class ImageTextPairs(Task):
    """Contrastive pre-training pairs: batch keys 'image' (n, 3, S, S) and 'tokens' (n, L).

    A fraction `digit_fraction` are digits; of the shape scenes, `multi_fraction` show two or
    three identical objects. Captions use a synonym in place of a colour or shape word with
    probability `synonym_rate` (rare words, as in web captions); the names of `rare_shapes`
    appear only with probability `rare_rate` (their synonym otherwise): under-represented
    concepts, for which CLIP's zero-shot prompt is weak.

    `held_out_split` (an int: the new classes of `base_new_split(held_out_split)`) keeps classes
    unseen, as a downloaded CLIP has never seen a truly new concept: no image of those
    colour-shape pairs is drawn and no caption names one (`named_classes`), while each of their
    colour and shape words still appears with the other classes. Zero-shot on them can then only
    come from composing words it learned elsewhere.

    Split 'eval' reports retrieval recall@k over `eval_pairs` pairs and zero-shot accuracy over
    the 48 colour-shape classes; with classes held out, also among the seen classes and among the
    held-out ones (each its own 24-way problem, as base and new are in prompt learning).
    """

    def __init__(self, *, image_size: int = 24, text_length: int = 16, digit_fraction: float = 0.2,
                 multi_fraction: float = 0.3, synonym_rate: float = 0.1, rare_shapes: Sequence[str] = (),
                 rare_rate: float = 0.02, noise: float = 0.0, eval_pairs: int = 512, eval_per_class: int = 8,
                 held_out_split: int | None = None) -> None:
        require(image_size >= 12, f"ImageTextPairs.image_size must be >= 12, got {image_size}")
        for name, value in (("digit_fraction", digit_fraction), ("multi_fraction", multi_fraction),
                            ("synonym_rate", synonym_rate), ("rare_rate", rare_rate)):
            require(0.0 <= value <= 1.0, f"ImageTextPairs.{name} must be in [0, 1], got {value}")
        unknown = set(rare_shapes) - set(SHAPES)
        require(not unknown and not isinstance(rare_shapes, str),
                f"ImageTextPairs.rare_shapes must be a list of shapes from {SHAPES}, got {rare_shapes!r}")
        self.rare_shapes = frozenset(SHAPES.index(name) for name in rare_shapes)
        self.rare_rate = rare_rate
        require(held_out_split is None or isinstance(held_out_split, int),
                f"ImageTextPairs.held_out_split must be None or the seed of a base/new split, got {held_out_split!r}")
        self.held_out_split = held_out_split
        self.held_out = [] if held_out_split is None else base_new_split(held_out_split)[1]
        self.seen = [(c, s) for c in range(len(COLOR_NAMES)) for s in range(len(SHAPES)) if (c, s) not in self.held_out]
        require(eval_pairs >= 8 and eval_per_class >= 1, "ImageTextPairs.eval_pairs must be >= 8 and eval_per_class >= 1")
        self.image_size, self.text_length = image_size, text_length
        self.digit_fraction, self.multi_fraction, self.synonym_rate = digit_fraction, multi_fraction, synonym_rate
        self.noise = noise
        self.eval_pairs, self.eval_per_class = eval_pairs, eval_per_class
        self.vocab = vocabulary()
        self.vocab_size = len(self.vocab)
        self.digit_size = max(8, image_size * 2 // 3)
        self._digit_pools: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def digit_pool(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        part = "train" if split == "train" else "test"
        if part not in self._digit_pools:  # resizing all digits once, not once per batch
            self._digit_pools[part] = digits(part, size=self.digit_size)
        return self._digit_pools[part]

    def draw(self, rng: np.random.Generator, n: int, split: str) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Images, captions and each image's (colour, shape) class ((-1, -1) for a digit)."""
        is_digit = rng.random(n) < self.digit_fraction
        shape = rng.integers(0, len(SHAPES), size=n)
        colour = rng.integers(0, len(COLOR_NAMES), size=n)
        if self.held_out:  # only seen classes are drawn
            colour, shape = np.array(self.seen).T[:, rng.integers(0, len(self.seen), size=n)]
        texture = rng.integers(0, len(TEXTURES), size=n)
        count = np.where(rng.random(n) < self.multi_fraction, rng.integers(2, 4, size=n), 1)
        images, scene = render_objects(rng, shape, colour, texture, image_size=self.image_size, count=count,
                                       noise=self.noise)
        captions = [shape_caption(rng, shape=shape[i], colour=colour[i], texture=texture[i], count=count[i],
                                  x=scene.x[i, 0], y=scene.y[i, 0], synonym_rate=self.synonym_rate,
                                  shape_synonym_rate=1 - self.rare_rate if shape[i] in self.rare_shapes else None)
                    for i in range(n)]
        rows = np.flatnonzero(is_digit)
        if len(rows):
            glyphs, labels = tinted_digits(rng, self.digit_pool(split), len(rows), colour[rows], self.image_size)
            images[rows] = glyphs
            for row, label in zip(rows, labels):
                captions[row] = digit_caption(rng, digit=int(label), colour=colour[row], synonym_rate=self.synonym_rate)
        classes = np.where(is_digit[:, None], -1, np.stack([colour, shape], axis=1))
        return images, captions, classes

    def make_pairs(self, rng: np.random.Generator, n: int, split: str) -> dict[str, np.ndarray]:
        images, captions, _ = self.draw(rng, n, split)
        return {"image": images, "tokens": self.vocab.encode_all(captions, self.text_length)}

    def batches(self, split, shard):
        return generated_batches(lambda rng, size, index: self.make_pairs(rng, size, split), split, shard)

    def loss(self, model, batch):
        out = model(batch["image"], batch["tokens"])
        logits = out["logits"].float()
        # Identical captions in one batch are all correct answers: share the target among them.
        same = (batch["tokens"][:, None, :] == batch["tokens"][None, :, :]).all(-1).float()
        targets = same / same.sum(dim=1, keepdim=True)
        loss = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
        hits = same.gather(1, logits.argmax(dim=1, keepdim=True)).mean()
        # The scale as the forward pass used it: the module's own parameter may be a shard (FSDP, ZeRO-3).
        return loss, {"image_to_text_accuracy": hits, "logit_scale": out["logit_scale"].float()}

    def eval_pairs_arrays(self) -> dict[str, np.ndarray]:
        return self.make_pairs(np.random.default_rng([7, self.eval_pairs]), self.eval_pairs, "eval")

    def zero_shot_arrays(self) -> dict[str, np.ndarray]:
        """`eval_per_class` single-object images of each colour-shape class and its label."""
        classes = [(c, s) for c in range(len(COLOR_NAMES)) for s in range(len(SHAPES))]
        label = np.repeat(np.arange(len(classes)), self.eval_per_class)
        rng = np.random.default_rng([11, self.eval_per_class])
        colour = np.array([classes[k][0] for k in label])
        shape = np.array([classes[k][1] for k in label])
        images, _ = render_objects(rng, shape, colour, rng.integers(0, len(TEXTURES), size=len(label)),
                                   image_size=self.image_size, noise=self.noise)
        names = [f"a photo of a {class_name(c, s)}" for c, s in classes]
        return {"image": images, "label": label, "prompts": self.vocab.encode_all(names, self.text_length)}

    def evaluate(self, model, split, shard):
        # The whole (small) evaluation set on every rank: retrieval needs all pairs in one matrix,
        # and every rank runs the same forward passes, as sharded strategies require.
        device = device_of(model)
        pairs = self.eval_pairs_arrays()
        tokens = torch.from_numpy(pairs["tokens"]).to(device)
        image = encode(model, "encode_image", torch.from_numpy(pairs["image"]).to(device))
        text = encode(model, "encode_text", tokens)
        same = (tokens[:, None, :] == tokens[None, :, :]).all(-1)
        metrics: dict[str, Any] = recall_at_k(image @ text.t(), same)
        zero = self.zero_shot_arrays()
        image = encode(model, "encode_image", torch.from_numpy(zero["image"]).to(device))
        classes = encode(model, "encode_text", torch.from_numpy(zero["prompts"]).to(device))
        similarity = image @ classes.t()
        metrics["zero_shot_accuracy"] = float((similarity.argmax(dim=1).cpu().numpy() == zero["label"]).mean())
        if self.held_out:
            every = [(c, s) for c in range(len(COLOR_NAMES)) for s in range(len(SHAPES))]
            for name, part in (("seen", self.seen), ("held_out", self.held_out)):
                index = np.array([every.index(k) for k in part])
                rows = np.flatnonzero(np.isin(zero["label"], index))
                predicted = index[similarity[rows][:, index].argmax(dim=1).cpu().numpy()]
                metrics[f"{name}_zero_shot_accuracy"] = float((predicted == zero["label"][rows]).mean())
        return metrics

    def tokens(self, batch):
        return int(batch["tokens"].numel())


def encode(model: torch.nn.Module, method: str, inputs: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Call `model.<method>` on `inputs` in chunks (evaluation sets are encoded whole)."""
    fn = getattr(unwrap(model), method)
    return torch.cat([fn(inputs[i:i + chunk]) for i in range(0, len(inputs), chunk)]).float()
