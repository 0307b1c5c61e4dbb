"""Generated image-caption pairs: deterministic and sharded, captions that name what is drawn,
class descriptions with flagged distractors, and recall@k."""
from __future__ import annotations

import os

import numpy as np
import torch

from engine.data import Shard
from tasks.prompting.image_text import ImageTextPairs, recall_at_k, render_objects
from tasks.images.sources.shapes import COLOR_NAMES, SHAPES
from tasks.prompting.shape_language import (COLOR_SYNONYMS, EOS_ID, SHAPE_PHRASES, SHAPE_SYNONYMS, PLURALS, base_new_split,
                                  class_descriptions, named_classes, shape_caption, vocabulary)

from tests.helpers import REPO


def test_pairs_are_a_pure_function_of_the_batch_index_and_split_across_ranks():
    task = ImageTextPairs(image_size=16)
    whole = next(task.batches("train", Shard(batch_size=8, start=3)))
    halves = [next(task.batches("train", Shard(batch_size=8, start=3, rank=r, world_size=2))) for r in range(2)]
    for key in ("image", "tokens"):
        assert torch.equal(torch.cat([h[key] for h in halves]), whole[key])
    assert not torch.equal(next(task.batches("train", Shard(batch_size=8, start=4)))["tokens"], whole["tokens"])
    assert whole["image"].shape == (8, 3, 16, 16) and (whole["tokens"] == EOS_ID).sum(1).eq(1).all()


def test_rare_shapes_are_mostly_named_by_their_synonym():
    import pytest
    from engine.errors import ConfigError
    vocab = vocabulary()
    task = ImageTextPairs(image_size=12, digit_fraction=0.0, rare_shapes=["diamond"], rare_rate=0.0)
    captions = [vocab.decode(t) for t in task.make_pairs(np.random.default_rng(0), 300, "train")["tokens"]]
    words = [w for c in captions for w in c.split()]
    assert "diamond" not in words and "diamonds" not in words and "rhombus" in words and "circle" in words
    with pytest.raises(ConfigError, match="rare_shapes must be a list of shapes"):
        ImageTextPairs(rare_shapes=["hexagon"])


def test_captions_name_the_colour_and_shape_that_are_drawn():
    rng = np.random.default_rng(0)
    vocab = vocabulary()
    for colour in range(len(COLOR_NAMES)):
        for shape in range(len(SHAPES)):
            images, scene = render_objects(rng, np.array([shape]), np.array([colour]), np.array([0]), image_size=16)
            drawn = images[0].reshape(3, -1).max(axis=1)
            assert drawn.max() > 0.5  # the object is visible
            for _ in range(5):
                caption = shape_caption(rng, shape=shape, colour=colour, texture=0, count=1, x=scene.x[0, 0],
                                        y=scene.y[0, 0], synonym_rate=0.5)
                words = set(caption.split())
                name = SHAPES[shape]
                assert words & {COLOR_NAMES[colour], *COLOR_SYNONYMS[COLOR_NAMES[colour]]}, caption
                assert (words & {name, *SHAPE_SYNONYMS[name]} or SHAPE_PHRASES[name] in caption), caption
                assert vocab.decode(vocab.encode(caption, 12)) == caption  # every word is in the vocabulary
    many = shape_caption(rng, shape=1, colour=2, texture=0, count=3, x=0.5, y=0.5, synonym_rate=0.0)
    assert "three" in many and PLURALS["square"] in many


def test_named_classes_reads_every_way_a_caption_can_name_a_class():
    for colour, shape in ((0, 0), (2, 3), (7, 5)):
        col, name = COLOR_NAMES[colour], SHAPES[shape]
        for text in (f"a {col} {name}", f"a photo of a {COLOR_SYNONYMS[col][0]} {SHAPE_SYNONYMS[name][0]}",
                     f"three {col} {PLURALS[name]}", f"a {col} {SHAPE_PHRASES[name]}", f"a {name} that is {col}"):
            assert named_classes(text) == {(colour, shape)}, text
    assert named_classes("a red tilted square") == {(0, 3)}  # a diamond's phrase, not a square
    assert named_classes("a red handwritten digit four") == set() and named_classes("a photo of the sky") == set()


def test_held_out_classes_are_never_drawn_and_zero_shot_is_reported_per_half():
    import pytest
    from engine.errors import ConfigError
    from models.clip import CLIP
    task = ImageTextPairs(image_size=12, text_length=12, held_out_split=0, eval_pairs=8, eval_per_class=1)
    new = set(base_new_split(0)[1])
    assert set(task.held_out) == new and len(task.seen) == 24
    _, captions, drawn = task.draw(np.random.default_rng(1), 400, "train")
    assert not {tuple(k) for k in drawn if k[0] >= 0} & new
    assert not set().union(*map(named_classes, captions)) & new
    assert not {tuple(k) for k in ImageTextPairs(image_size=12).draw(np.random.default_rng(1), 400, "train")[2]
                if k[0] >= 0}.isdisjoint(new)  # without the option they are drawn
    from engine.config import parse
    parse([os.path.join(REPO, "gin", "aape", "clip_towers.gin")],
          ["IMAGE_SIZE = 12", "ViT.d_model = 16", "ViT.num_layers = 1", "ViT.num_heads = 2", "EMBED_DIM = 16",
           "TextTransformer.d_model = 16", "TextTransformer.num_layers = 1", "TextTransformer.num_heads = 2"])
    with torch.no_grad():
        metrics = task.evaluate(CLIP().eval(), "eval", None)
    assert {"zero_shot_accuracy", "seen_zero_shot_accuracy", "held_out_zero_shot_accuracy"} <= set(metrics)
    with pytest.raises(ConfigError, match="held_out_split must be None or the seed"):
        ImageTextPairs(held_out_split="0")


def test_descriptions_describe_their_class_except_the_flagged_distractors():
    for colour, shape in ((0, 0), (5, 3), (7, 5)):
        texts, distractor = class_descriptions(colour, shape)
        assert len(texts) == 11 and sum(distractor) == 2
        colour_words = {COLOR_NAMES[colour], *COLOR_SYNONYMS[COLOR_NAMES[colour]]}
        for text, flagged in zip(texts, distractor):
            assert bool(set(text.split()) & colour_words) != flagged, text
        assert class_descriptions(colour, shape) == (texts, distractor)  # a fixed list, like cached LLM output
    base, new = base_new_split(0)
    for colour, shape in base:  # base-to-new training's descriptions never name a new class
        texts, _ = class_descriptions(colour, shape, others=base)
        assert not set().union(*map(named_classes, texts)) & set(new)


def test_recall_at_k_counts_identical_captions_as_hits():
    similarity = torch.eye(4)
    same = torch.eye(4, dtype=torch.bool)
    assert recall_at_k(similarity, same)["image_to_text/recall@1"] == 1.0
    shifted = 2 * similarity.roll(1, dims=1) + similarity  # every image prefers the wrong caption ...
    assert recall_at_k(shifted, same, ks=(1, 2))["text_to_image/recall@1"] == 0.0
    assert recall_at_k(shifted, same, ks=(1, 2))["text_to_image/recall@2"] == 1.0  # ... but ranks it second
    duplicate = same.clone()
    duplicate[0, 1] = duplicate[1, 0] = True  # captions 0 and 1 are the same text
    assert recall_at_k(shifted, duplicate)["image_to_text/recall@1"] == 0.25  # image 0's top caption is 1


def test_gin_vocabulary_size_matches_the_language():
    text = open(os.path.join(REPO, "gin", "aape", "clip_towers.gin")).read()
    assert f"TextTransformer.vocab_size = {len(vocabulary())}" in text
