"""Few-shot base-to-new prompt learning on the colour-shape classes of the procedural world.

The 48 colour-shape classes are split once into base and new halves. Training sees `shots`
images of each base class; evaluation scores base classes among base classes, new classes
among new classes, and their harmonic mean (the CoOp/CoCoOp protocol), plus an
out-of-distribution split (rotated, recoloured images of the base classes) and image-text
retrieval recall@k of the backbone. AAPE's class descriptions are passed only while training,
and none of them names a new class.

Validation splits, drawn apart from the test images, select hyper-parameters: `base_validation`
only, since choosing on `new_validation` would read new-class labels that base-to-new
generalisation must not see (it exists to show that, and for diagnostics).
"""
from __future__ import annotations

import functools
from typing import Any

import gin
import numpy as np
import torch
import torch.nn.functional as F

from engine.data import device_of, unwrap
from engine.errors import require
from engine.task import Task
from tasks.common.arrays import shuffled_batches
from tasks.prompting.image_text import ImageTextPairs, encode, recall_at_k, render_objects
from tasks.images.sources.shapes import TEXTURES
from tasks.prompting.shape_language import base_new_split, class_descriptions, class_name, vocabulary

TEMPLATE = "a photo of a"
SPLITS = ("base_to_new", "ood", "retrieval", "base_validation", "new_validation")


def harmonic_mean(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


@gin.configurable
class FewShotBaseToNew(Task):
    """`shots` training images per base class (drawn with `shots_seed`); eval splits
    'base_to_new' (base, new, harmonic mean), 'ood', 'retrieval', and 'base_validation' /
    'new_validation' (`validation_per_class` other images of each base / new class: accuracy).

    Downstream objects are smaller than in pre-training (`scale`, optional pixel `noise`), so
    the hand-written prompt is a good but imperfect classifier, as CLIP is on a new dataset.
    """

    def __init__(self, *, shots: int = 16, shots_seed: int = 0, image_size: int = 24, text_length: int = 12,
                 split_seed: int = 0, eval_per_class: int = 20, noise: float = 0.0,
                 scale: tuple[float, float] = (0.1, 0.2), ood_rotation: float = 45.0,
                 ood_color_shift: float = 0.25, min_descriptions: int = 8, retrieval_pairs: int = 256,
                 validation_per_class: int = 10) -> None:
        require(shots >= 1, f"FewShotBaseToNew.shots must be >= 1, got {shots}")
        require(eval_per_class >= 1, f"FewShotBaseToNew.eval_per_class must be >= 1, got {eval_per_class}")
        require(validation_per_class >= 1,
                f"FewShotBaseToNew.validation_per_class must be >= 1, got {validation_per_class}")
        require(0 < scale[0] <= scale[1] < 0.5, f"FewShotBaseToNew.scale must satisfy 0 < low <= high < 0.5, got {scale}")
        self.shots, self.shots_seed, self.image_size, self.text_length = shots, shots_seed, image_size, text_length
        self.eval_per_class, self.noise, self.scale = eval_per_class, noise, tuple(scale)
        self.validation_per_class = validation_per_class
        self.ood_rotation, self.ood_color_shift = ood_rotation, ood_color_shift
        self.vocab = vocabulary()
        self.base, self.new = base_new_split(split_seed)
        self.template = self.vocab.encode(TEMPLATE, text_length)[:len(TEMPLATE.split())]
        self.names = {part: self.vocab.encode_all([class_name(*k) for k in classes], text_length)
                      for part, classes in (("base", self.base), ("new", self.new))}
        self.descriptions, self.description_mask, self.distractor = self._descriptions(min_descriptions)
        self.retrieval = ImageTextPairs(image_size=image_size, text_length=text_length, eval_pairs=retrieval_pairs)
        self.train_arrays = self.images(self.base, shots, np.random.default_rng([shots_seed, shots, 1]))

    # --- data ---------------------------------------------------------------------------------
    def images(self, classes: list[tuple[int, int]], per_class: int, rng: np.random.Generator,
               rotation: float = 0.0, color_shift: float = 0.0) -> dict[str, np.ndarray]:
        """`per_class` images of each class (random texture and place) in the downstream style."""
        label = np.repeat(np.arange(len(classes)), per_class)
        colour = np.array([classes[k][0] for k in label])
        shape = np.array([classes[k][1] for k in label])
        texture = rng.integers(0, len(TEXTURES), size=len(label))
        image, _ = render_objects(rng, shape, colour, texture, image_size=self.image_size, scale=self.scale,
                                  noise=self.noise, rotation=rotation, color_shift=color_shift)
        return {"image": image, "label": label}

    @functools.cached_property
    def eval_arrays(self) -> dict[str, dict[str, np.ndarray]]:
        """Fixed evaluation images, the same for every seed and method; the validation images are
        other draws (own random streams), never test images."""
        return {"base": self.images(self.base, self.eval_per_class, np.random.default_rng([5, 1])),
                "new": self.images(self.new, self.eval_per_class, np.random.default_rng([5, 2])),
                "ood": self.images(self.base, self.eval_per_class, np.random.default_rng([5, 3]),
                                   rotation=self.ood_rotation, color_shift=self.ood_color_shift),
                "base_validation": self.images(self.base, self.validation_per_class, np.random.default_rng([6, 1])),
                "new_validation": self.images(self.new, self.validation_per_class, np.random.default_rng([6, 2]))}

    def _descriptions(self, keep_at_least: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Description tokens (base classes, N, L), a mask (some classes have fewer: as an LLM
        returns a different number per class) and which ones are distractors."""
        rng = np.random.default_rng(3)
        texts, flags = zip(*(class_descriptions(c, s, others=self.base) for c, s in self.base))
        most = max(len(t) for t in texts)
        require(1 <= keep_at_least <= most, f"FewShotBaseToNew.min_descriptions must be in 1..{most}, got {keep_at_least}")
        tokens = np.zeros((len(texts), most, self.text_length), dtype=np.int64)
        mask = np.zeros((len(texts), most), dtype=bool)
        distractor = np.zeros((len(texts), most), dtype=bool)
        for k, (class_texts, class_flags) in enumerate(zip(texts, flags)):
            keep = rng.integers(keep_at_least, len(class_texts) + 1)
            tokens[k, :keep] = self.vocab.encode_all(class_texts[:keep], self.text_length)
            tokens[k, keep:, 0] = 1  # padded rows hold an empty text, so every row has an end token
            mask[k, :keep] = True
            distractor[k, :keep] = class_flags[:keep]
        return tokens, mask, distractor

    def batches(self, split, shard):
        require(split == "train", f"FewShotBaseToNew trains on split 'train' and evaluates {SPLITS}, not {split!r}")
        return shuffled_batches(self.train_arrays, split, shard)

    # --- objective ----------------------------------------------------------------------------
    def constants(self, device: torch.device) -> dict[str, torch.Tensor]:
        as_tensor = functools.partial(torch.as_tensor, device=device)
        return {"base": as_tensor(self.names["base"]), "new": as_tensor(self.names["new"]),
                "template": as_tensor(self.template), "descriptions": as_tensor(self.descriptions),
                "description_mask": as_tensor(self.description_mask), "distractor": as_tensor(self.distractor)}

    def loss(self, model, batch):
        const = self.constants(batch["image"].device)
        labels = batch["label"]
        out = model(batch["image"], const["base"], const["template"], labels=labels,
                    descriptions=const["descriptions"], description_mask=const["description_mask"])
        logits = out["logits"].float()
        loss = F.cross_entropy(logits, labels)
        metrics = {"accuracy": (logits.argmax(-1) == labels).float().mean(), "cross_entropy": loss.detach()}
        if "aux_loss" in out:
            loss = loss + out["aux_loss"]
            metrics["aux_loss"] = out["aux_loss"].detach()
        for name in ("distill", "aggregator_loss"):
            if name in out:
                metrics[name] = out[name]
        if "description_weights" in out:
            weights, valid = out["description_weights"], const["description_mask"][labels].float()
            distractor = const["distractor"][labels].float()
            metrics["attention/distractor_share"] = (weights * distractor).sum(-1).mean()
            metrics["attention/distractor_share_uniform"] = (distractor.sum(-1) / valid.sum(-1)).mean()
        return loss, metrics

    # --- evaluation ---------------------------------------------------------------------------
    def predict(self, model: torch.nn.Module, images: np.ndarray, names: torch.Tensor,
                template: torch.Tensor, chunk: int = 64) -> np.ndarray:
        """Predicted class indices; the model gets images, names and template only (no descriptions)."""
        device = names.device
        out = []
        for start in range(0, len(images), chunk):
            x = torch.from_numpy(images[start:start + chunk]).to(device)
            out.append(model(x, names, template)["logits"].argmax(-1).cpu().numpy())
        return np.concatenate(out)

    def accuracy(self, model, part: str, names: str, const: dict[str, torch.Tensor]) -> float:
        arrays = self.eval_arrays[part]
        return float((self.predict(model, arrays["image"], const[names], const["template"]) == arrays["label"]).mean())

    def evaluate(self, model, split, shard):
        # Whole (small) splits on every rank: the harmonic mean needs both halves, and every rank
        # runs the same forward passes, as sharded strategies require.
        require(split in SPLITS, f"FewShotBaseToNew has eval splits {SPLITS}, not {split!r}")
        const = self.constants(device_of(model))
        if split == "base_to_new":
            base, new = self.accuracy(model, "base", "base", const), self.accuracy(model, "new", "new", const)
            return {"base_accuracy": base, "new_accuracy": new, "harmonic_mean": harmonic_mean(base, new)}
        if split in ("ood", "base_validation"):
            return {"accuracy": self.accuracy(model, split, "base", const)}
        if split == "new_validation":
            return {"accuracy": self.accuracy(model, split, "new", const)}
        return self.backbone_retrieval(model)

    def backbone_retrieval(self, model: torch.nn.Module) -> dict[str, Any]:
        """Recall@k of the frozen backbone on generated image-caption pairs (prompt learning must
        leave it exactly as pre-trained)."""
        clip = unwrap(model).clip
        device = device_of(model)
        pairs = self.retrieval.eval_pairs_arrays()
        tokens = torch.from_numpy(pairs["tokens"]).to(device)
        image = encode(clip, "encode_image", torch.from_numpy(pairs["image"]).to(device))
        same = (tokens[:, None, :] == tokens[None, :, :]).all(-1)
        return recall_at_k(image @ encode(clip, "encode_text", tokens).t(), same)
