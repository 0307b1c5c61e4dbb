"""The target validation split that studies select on: absent by default, disjoint from the target
test set, drawn from the target's distribution, and changing no other split when added."""
from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ConfigError
from tasks.adaptation.domain_shift import VALIDATION, RotatedDigits, RotatedMoons, ShiftedShapes


def rows(split, key):
    return {x.tobytes() for x in split[key]}


def test_digits_validation_comes_out_of_the_target_test_digits():
    plain = RotatedDigits(target_angles=(30, 35), image_size=8)
    split = RotatedDigits(target_angles=(30, 35), image_size=8, validation_size=150)
    assert VALIDATION not in plain.splits and plain.eval_splits == plain.domains
    assert split.eval_splits == [*split.domains, VALIDATION]
    validation, test, whole = split.splits[VALIDATION], split.splits["target"], plain.splits["target"]
    assert (len(validation["label"]), len(test["label"])) == (150, len(whole["label"]) - 150)
    assert rows(validation, "image").isdisjoint(rows(test, "image"))
    assert rows(validation, "image") | rows(test, "image") == rows(whole, "image")
    for name in ("source", "intermediate_2"):  # the other domains keep every held-out digit
        assert np.array_equal(plain.splits[name]["image"], split.splits[name]["image"])
    with pytest.raises(ConfigError, match="validation_size"):
        RotatedDigits(image_size=8, validation_size=len(whole["label"]))


def class_mean(split, label):
    return split["inputs"][split["label"] == label].mean(0)


def test_moons_validation_is_fresh_target_data():
    plain = RotatedMoons(target_angles=(50, 55), test_size=2000)
    split = RotatedMoons(target_angles=(50, 55), test_size=2000, validation_size=2000)
    for name in split.domains:
        assert np.array_equal(plain.splits[name]["inputs"], split.splits[name]["inputs"])
    validation, test, source = split.splits[VALIDATION], split.splits["target"], split.splits["source"]
    assert rows(validation, "inputs").isdisjoint(rows(test, "inputs"))
    # A rotation moves each moon: the validation moons sit where the target's do, not the source's.
    for label in (0, 1):
        assert np.linalg.norm(class_mean(validation, label) - class_mean(test, label)) < 0.05
        assert np.linalg.norm(class_mean(validation, label) - class_mean(source, label)) > 0.3


def test_shapes_validation_is_fresh_target_data():
    plain = ShiftedShapes(test_size=400)
    split = ShiftedShapes(test_size=400, validation_size=400)
    for name in split.domains:
        assert np.array_equal(plain.splits[name]["image"], split.splits[name]["image"])
    validation, test, source = split.splits[VALIDATION], split.splits["target"], split.splits["source"]
    channel = lambda s: s["image"].mean(axis=(0, 2, 3))
    assert np.abs(channel(validation) - channel(test)).max() < 0.02  # the target's colours
    assert np.abs(channel(validation) - channel(source)).max() > 0.05
    assert set(np.unique(validation["label"])) == set(np.unique(test["label"]))
