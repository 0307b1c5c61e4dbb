"""Tasks for Hyper-UT: visual PVR labels, textured shapes, the C-PVR shortcut and ponder heat maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import summaries
from engine.errors import ConfigError
from engine.data import Shard
from tasks.images.sources.digits import digits
from tasks.pvr.vector import CPVR, cpvr_examples, pointer_chain, shortcut_answers
from tasks.images.textured_shapes import TexturedShapes
from tasks.pvr.visual import VisualPVR


def first(task, split, **shard):
    return next(iter(task.batches(split, Shard(**{"batch_size": 64, **shard}))))


def matching_digit(cell: np.ndarray, images: np.ndarray, labels: np.ndarray) -> int:
    """The label of the source image a grid cell was copied from (found by exact match)."""
    index = np.flatnonzero((images == cell[None]).all(axis=(1, 2, 3)))[0]
    return int(labels[index])


@pytest.mark.parametrize("window", [0, 1, 2])
def test_visual_pvr_labels_follow_the_pointer_digit_in_the_picture(window):
    task = VisualPVR(window=window, aggregation="max")
    images, labels = digits("train")
    batch = first(task, "train", batch_size=32)
    regions = [(slice(0, 8), slice(0, 8)), (slice(0, 8), slice(8, 16)), (slice(8, 16), slice(0, 8)),
               (slice(8, 16), slice(8, 16))]
    for image, label in zip(batch["image"].numpy(), batch["label"].tolist()):
        cells = [matching_digit(image[:, r, c], images, labels) for r, c in regions]
        pointer, values = cells[0], cells[1:]
        # The spec's mapping for one value: 0-3 -> top-right, 4-6 -> bottom-left, 7-9 -> bottom-right.
        start = (0 if pointer <= 3 else 1 if pointer <= 6 else 2) if window == 0 else pointer * (3 - window) // 10
        assert label == max(values[start:start + window + 1])
    assert batch["image"].shape == (32, 1, 16, 16)


def test_visual_pvr_evaluates_on_unseen_handwriting():
    task = VisualPVR()
    train_pool = {image.tobytes() for image in digits("train")[0]}
    grid = first(task, "eval")["image"].numpy()
    cells = [grid[:, :, :8, :8], grid[:, :, :8, 8:], grid[:, :, 8:, :8], grid[:, :, 8:, 8:]]
    assert not any(cell.tobytes() in train_pool for part in cells for cell in part)
    with pytest.raises(ConfigError):
        VisualPVR(window=3)


def test_cpvr_curriculum_opens_training_hops_one_at_a_time():
    task = CPVR(length=16, train_hops=(2, 5), curriculum_batches=3)
    highest = [int(first(task, "train", start=i)["level"].max()) for i in range(14)]
    assert highest[:3] == [2, 2, 2] and highest[3:6] == [3, 3, 3] and max(highest) == 5
    assert all(h <= 2 + i // 3 for i, h in enumerate(highest))
    assert set(first(task, "eval")["level"].tolist()) == set(range(1, 9))  # evaluation is unchanged
    with pytest.raises(ConfigError):
        CPVR(curriculum_batches=-1)


def test_textured_shapes_are_deterministic_and_cover_all_classes():
    task = TexturedShapes(image_size=16)
    a, b = first(task, "train", start=3), first(task, "train", start=3)
    assert torch.equal(a["image"], b["image"]) and a["image"].shape == (64, 3, 16, 16)
    labels = torch.cat([first(task, "train", start=i, batch_size=256)["label"] for i in range(4)])
    assert set(labels.tolist()) == set(range(24))
    with pytest.raises(ConfigError):
        TexturedShapes(scale=(0.3, 0.6))


def test_shortcut_answers_more_long_chains_on_short_sequences():
    rng = np.random.default_rng(0)

    def accuracy(length, hops):
        examples = cpvr_examples(rng, np.full(2000, hops), length)
        return float((shortcut_answers(examples["tokens"]) == examples["label"]).mean())

    assert accuracy(16, 8) > 0.7 > 0.35 > accuracy(16, 2)  # the trap of a short sequence
    assert accuracy(48, 8) < 0.35
    # It does not follow the chain: filler position 1 points at 6, a later non-forward position.
    tokens = np.array([[2, 6, 5, 0, 3, 1, 0, 0]])
    assert pointer_chain(tokens[0]) == [0, 2, 5]  # the label is x[5] = 1
    assert shortcut_answers(tokens)[0] == 0  # the decoy's value x[6]
    tokens[0, 1] = 0
    assert shortcut_answers(tokens)[0] == 1  # without the decoy it is right


def test_cpvr_evaluation_reports_no_shortcut_accuracy_and_a_ponder_heat_map():
    from models.universal import UniversalTransformerClassifier
    torch.manual_seed(0)
    task = CPVR(length=8, train_hops=(1, 2), eval_hops=(1, 3), eval_examples_per_level=16)
    model = UniversalTransformerClassifier(vocab_size=8, num_classes=8, max_len=8, d_model=16, num_heads=2,
                                           max_steps=3).eval()
    with torch.no_grad():
        metrics = task.evaluate(model, "eval", Shard(batch_size=16))
    for name in ("accuracy_no_shortcut/hops_1", "accuracy_no_shortcut/in_range", "ponder/hops_3",
                 "accuracy/out_of_range"):
        assert name in metrics, name
    assert isinstance(metrics["ponder_map"], summaries.Image)
    assert metrics["ponder_map"].pixels.ndim == 3
