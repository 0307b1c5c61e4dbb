"""Generated image-caption pairs: deterministic and sharded, captions that name what is drawn,
class descriptions with flagged distractors, and recall@k."""
from __future__ import annotations

import os

import numpy as np
import torch

from engine.data import Shard
from tasks.prompting.image_text import ImageTextPairs, recall_at_k, render_objects
from tasks.images.sources.shapes import COLOR_NAMES, SHAPES
from tasks.prompting.shape_language import (COLOR_SYNONYMS, EOS_ID, SHAPE_PHRASES, SHAPE_SYNONYMS, PLURALS, class_descriptions,
                                  shape_caption, vocabulary)

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


def test_descriptions_describe_their_class_except_the_flagged_distractors():
    for colour, shape in ((0, 0), (5, 3), (7, 5)):
        texts, distractor = class_descriptions(colour, shape)
        assert len(texts) == 11 and sum(distractor) == 2
        colour_words = {COLOR_NAMES[colour], *COLOR_SYNONYMS[COLOR_NAMES[colour]]}
        for text, flagged in zip(texts, distractor):
            assert bool(set(text.split()) & colour_words) != flagged, text
        assert class_descriptions(colour, shape) == (texts, distractor)  # a fixed list, like cached LLM output


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
