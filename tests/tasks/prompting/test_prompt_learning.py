"""Few-shot base-to-new prompt learning: the class split, the few-shot draw, a tiny pre-trained
mini-CLIP that classifies base and new classes zero-shot, and every prompt gin file on top of it."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from engine import checkpoint
from engine.errors import ConfigError
from engine.data import Shard
from models.prompting import ZeroShotPrompts
from tasks.images.sources.shapes import COLOR_NAMES, SHAPES
from tasks.prompting.prompt_learning import FewShotBaseToNew, base_new_split, harmonic_mean
from tests.helpers import REPO, train_in_process

# A mini-CLIP small enough to pre-train in seconds: 16x16 single-object images, one block per tower.
TINY = ["IMAGE_SIZE = 16", "ViT.patch_size = 4", "ViT.d_model = 32", "ViT.num_layers = 1", "ViT.num_heads = 2",
        "TextTransformer.d_model = 32", "TextTransformer.num_layers = 1", "TextTransformer.num_heads = 2",
        "EMBED_DIM = 32", "train.log_every = 50", "train.checkpoint_every = 0"]
TINY_PRETRAIN = ["ImageTextPairs.digit_fraction = 0.0", "ImageTextPairs.multi_fraction = 0.0",
                 "ImageTextPairs.eval_pairs = 64", "ImageTextPairs.eval_per_class = 1", "train.batch_size = 64",
                 "WarmupCosine.warmup_steps = 10", "AdamW.lr = 5e-3", "train.steps = 100", "train.eval_every = 100"]
TINY_PROMPTS = ["FewShotBaseToNew.eval_per_class = 4", "FewShotBaseToNew.scale = (0.18, 0.3)",
                "FewShotBaseToNew.retrieval_pairs = 32", "FewShotBaseToNew.shots = 2", "train.batch_size = 8"]


def test_base_and_new_classes_split_every_colour_and_shape():
    base, new = base_new_split(0)
    assert len(base) == len(new) == 24 and not set(base) & set(new)
    for part in (base, new):
        assert {c for c, _ in part} == set(range(len(COLOR_NAMES))) and {s for _, s in part} == set(range(len(SHAPES)))
    assert base_new_split(1) != (base, new)
    assert harmonic_mean(0.8, 0.4) == pytest.approx(0.5333, abs=1e-4) and harmonic_mean(0.0, 0.0) == 0.0


def test_few_shot_draw_and_descriptions():
    task = FewShotBaseToNew(shots=3, shots_seed=1, image_size=16, eval_per_class=1)
    assert np.bincount(task.train_arrays["label"]).tolist() == [3] * 24
    again = FewShotBaseToNew(shots=3, shots_seed=1, image_size=16, eval_per_class=1)
    other = FewShotBaseToNew(shots=3, shots_seed=2, image_size=16, eval_per_class=1)
    assert np.array_equal(task.train_arrays["image"], again.train_arrays["image"])
    assert not np.array_equal(task.train_arrays["image"], other.train_arrays["image"])
    assert np.array_equal(task.eval_arrays["new"]["image"], other.eval_arrays["new"]["image"])  # fixed test set
    counts = task.description_mask.sum(1)
    assert counts.min() >= 8 and counts.max() == 11 and len(set(counts.tolist())) > 1  # some classes padded
    assert not task.distractor[~task.description_mask].any() and task.distractor.any()
    assert task.vocab.decode(task.template) == "a photo of a"
    with pytest.raises(ConfigError, match="shots must be >= 1"):
        FewShotBaseToNew(shots=0)
    with pytest.raises(ConfigError, match="eval splits"):
        task.evaluate(None, "test", Shard(batch_size=1))


def test_validation_splits_are_other_images_of_the_same_classes():
    """Selection images never repeat a test or training image; each split holds its own classes."""
    task = FewShotBaseToNew(shots=2, image_size=16, eval_per_class=3, validation_per_class=2)
    images = lambda arrays: {x.tobytes() for x in arrays["image"]}
    for part, test in (("base_validation", "base"), ("new_validation", "new")):
        arrays = task.eval_arrays[part]
        assert np.bincount(arrays["label"]).tolist() == [2] * 24
        assert not images(arrays) & images(task.eval_arrays[test]) and not images(arrays) & images(task.train_arrays)
    with pytest.raises(ConfigError, match="validation_per_class must be >= 1"):
        FewShotBaseToNew(validation_per_class=0)


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    """A tiny mini-CLIP pre-trained from gin/aape/clip_pretrain.gin, exported to safetensors."""
    root = tmp_path_factory.mktemp("aape")
    result = train_in_process(str(root / "pretrain"), TINY + TINY_PRETRAIN, files=("gin/aape/clip_pretrain.gin",))
    export = str(root / "clip.safetensors")
    checkpoint.export_safetensors(result.checkpoint, export)
    return export, result


def prompt_run(tmp_path, backbone_file: str, method: str, extra=()):
    return train_in_process(str(tmp_path / method), TINY + TINY_PROMPTS + [f"BACKBONE = '{backbone_file}'", *extra],
                            files=(f"gin/aape/{method}.gin",))


def test_tiny_pretraining_classifies_base_and_new_classes_zero_shot_well_above_chance(backbone, tmp_path):
    export, pretrain = backbone
    assert pretrain.metrics["eval"]["zero_shot_accuracy"] > 4 / 48  # 48 classes: chance is 1/48
    # The new classes were held out of pre-training (gin/aape/clip_pretrain.gin): zero-shot on them
    # composes colour and shape words learned from other classes.
    assert pretrain.metrics["eval"]["held_out_zero_shot_accuracy"] > 3 / 24
    result = prompt_run(tmp_path, export, "zeroshot", ["train.eval_splits = ['base_to_new', 'base_validation', "
                                                       "'new_validation']"])
    metrics = result.metrics["base_to_new"]
    assert metrics["base_accuracy"] > 3 / 24 and metrics["new_accuracy"] > 3 / 24  # chance is 1/24 for each
    assert 3 / 24 < result.metrics["base_validation"]["accuracy"] and 3 / 24 < result.metrics["new_validation"]["accuracy"]


@pytest.mark.parametrize("method", ["coop", "cocoop", "aape"])
def test_prompt_gin_files_train_prompts_on_the_frozen_backbone(backbone, tmp_path, method):
    export, _ = backbone
    result = prompt_run(tmp_path, export, method, ["train.steps = 3", "train.eval_every = 3",
                                                   "WarmupCosine.warmup_steps = 1"])
    assert set(result.metrics) == {"base_to_new", "ood", "retrieval"}
    weights = checkpoint.load_weights(export)
    assert all(torch.equal(result.model.clip.state_dict()[k].cpu(), v) for k, v in weights.items())
    assert result.metrics["retrieval"] == prompt_run(tmp_path, export, "zeroshot").metrics["retrieval"]


def test_evaluation_never_passes_descriptions(backbone):
    export, _ = backbone
    from engine import config
    config.parse([os.path.join(REPO, "gin", "aape", "clip_towers.gin")], TINY)
    task = FewShotBaseToNew(image_size=16, eval_per_class=1, shots=1)
    seen = []

    class Spy(ZeroShotPrompts):
        def forward(self, images, names, template, **training_only):
            seen.append(sorted(training_only))
            return super().forward(images, names, template)

    model = Spy()
    model.load_state_dict(checkpoint.load_weights(export))
    with torch.no_grad():
        task.evaluate(model.eval(), "base_to_new", Shard(batch_size=8))
    assert seen and all(kwargs == [] for kwargs in seen)
    task.loss(model.train(), next(task.batches("train", Shard(batch_size=4))))
    assert seen[-1] == ["description_mask", "descriptions", "labels"]  # training does pass them
