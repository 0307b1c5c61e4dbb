"""Domain-shift data: the shift is what it claims, pools do not move with the number of
intermediate domains, bad settings are ConfigErrors, and target labels stay out of training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.data import Shard
from tasks.adaptation.domain_shift import RotatedDigits, RotatedMoons, ShiftedShapes, domain_names
from tasks.adaptation.gift import GiftTask
from tasks.adaptation.pseudo_labels import PseudoLabelTask
from tasks.images.sources.transforms import rotate

TINY_MOONS = dict(pool_size=64, intermediate_pool_size=32, test_size=400)


def test_rotated_digits_target_test_set_is_the_source_test_set_turned():
    task = RotatedDigits(source_angles=(0, 0), target_angles=(90, 90), intermediate_domains=1, image_size=8)
    source, target = task.splits["source"], task.splits["target"]
    assert np.array_equal(source["label"], target["label"])
    assert np.allclose(rotate(source["image"], 90.0), target["image"], atol=1e-5)
    assert task.domains == domain_names(1) == ["source", "intermediate_1", "target"]
    assert np.allclose(rotate(source["image"], 45.0), task.splits["intermediate_1"]["image"], atol=1e-5)


def test_source_and_target_pools_do_not_depend_on_the_intermediate_domains():
    plain = RotatedDigits(intermediate_domains=0, image_size=8)
    gradual = RotatedDigits(intermediate_domains=3, intermediate_pool_size=50, image_size=8)
    for domain in ("source", "target"):
        assert np.array_equal(plain.pools[domain]["label"], gradual.pools[domain]["label"])
    assert len(gradual.pools["intermediate_2"]["label"]) == 50
    # Disjoint digits: the source pool, unrotated, shares no image with the target pool's.
    unturned = RotatedDigits(source_angles=(0, 0), target_angles=(0, 0), intermediate_domains=0, image_size=8)
    source = {x.tobytes() for x in unturned.pools["source"]["image"]}
    assert sum(x.tobytes() in source for x in unturned.pools["target"]["image"]) < 5  # (a few duplicates exist)


def test_rotated_moons_turn_by_the_target_angle():
    task = RotatedMoons(source_angles=(0, 0), target_angles=(90, 90), intermediate_domains=0, noise=0.05,
                        **TINY_MOONS)

    def direction(domain):  # from the class-1 moon's centre to the class-0 moon's centre
        points, labels = task.splits[domain]["inputs"], task.splits[domain]["label"]
        delta = points[labels == 0].mean(0) - points[labels == 1].mean(0)
        return np.degrees(np.arctan2(delta[1], delta[0]))

    assert abs((direction("target") - direction("source")) % 360 - 90) < 5


def _shapes(**target):
    settings = dict(target_scale=(0.3, 0.42), target_blur=0.0, target_color_shift=(0.0, 0.0, 0.0))
    task = ShiftedShapes(pool_size=8, intermediate_pool_size=8, test_size=64, intermediate_domains=0,
                         **{**settings, **target})
    return task.splits["source"]["image"], task.splits["target"]["image"]


def test_shifted_shapes_shift_scale_blur_and_colour():
    source, target = _shapes(target_scale=(0.15, 0.2))
    assert (target.max(1) > 0.05).mean() < 0.5 * (source.max(1) > 0.05).mean()  # smaller objects
    source, target = _shapes(target_blur=1.0)

    def edges(images):
        return np.abs(np.diff(images, axis=-1)).mean()
    assert edges(target) < 0.8 * edges(source)
    source, target = _shapes(target_color_shift=(-0.3, 0.2, 0.0))
    assert target[:, 0].sum() < source[:, 0].sum() and target[:, 1].sum() > source[:, 1].sum()


@pytest.mark.parametrize("build, message", [
    (lambda: RotatedDigits(train_domain="middle"), "train_domain"),
    (lambda: RotatedDigits(target_angles=(60, 55)), "low <= high"),
    (lambda: RotatedDigits(pool_size=700), "lower the pool sizes"),
    (lambda: RotatedMoons(intermediate_domains=-1), "intermediate_domains"),
    (lambda: ShiftedShapes(target_scale=(0.2, 0.7)), "half-sizes"),
])
def test_bad_domain_settings_are_config_errors(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_adaptation_batches_carry_no_target_labels():
    task = RotatedMoons(**TINY_MOONS)
    teacher = torch.nn.Identity()
    pseudo = next(PseudoLabelTask(task, teacher, domain="target").batches("train", Shard(batch_size=8)))
    assert set(pseudo) == {"inputs"}
    gift = next(GiftTask(task, teacher, round_index=0, rounds=2).batches("train", Shard(batch_size=8)))
    assert "target_label" not in gift and set(gift) >= {"inputs", "label", "target_inputs"}
    # The source labels that GIFT does use are the source pool's.
    assert set(gift["label"].tolist()) <= {0, 1}
