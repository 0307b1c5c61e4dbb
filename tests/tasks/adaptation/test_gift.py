"""GIFT's pieces: label-matched pairing, lambda schedules, and the limits of the mixing loss
(lambda = 0 is a source training step; lambda = 1 sees target features only)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.data import Shard
from models.mlp import MLP
from tasks.common.classification import classification_loss
from tasks.adaptation.domain_shift import RotatedMoons
from tasks.adaptation.gift import GiftBetaLambda, GiftLinearLambda, GiftTask, mix, pair_by_label


def test_pairing_matches_labels_and_reaches_every_candidate():
    torch.manual_seed(0)
    source = torch.randint(0, 4, (200,))
    target = torch.randint(0, 3, (12,))  # class 3 never appears among the targets
    usable = torch.rand(12) > 0.3
    partner = pair_by_label(source, target, usable, torch.rand(200))
    paired = partner >= 0
    assert (target[partner[paired]] == source[paired]).all() and usable[partner[paired]].all()
    candidates = {int(c) for c in target[usable]}
    assert set(source[~paired].tolist()).isdisjoint(candidates)  # unpaired only where no candidate exists
    assert set(partner[paired].tolist()) == set(torch.nonzero(usable).flatten().tolist())


@pytest.mark.parametrize("schedule", [GiftBetaLambda(), GiftBetaLambda(first_mean=0.0), GiftLinearLambda()])
def test_lambda_means_rise_to_exactly_one(schedule):
    rounds = 5
    means = [schedule.mean(k, rounds) for k in range(rounds)]
    assert all(a < b for a, b in zip(means, means[1:])) and means[-1] == 1.0
    rng = np.random.default_rng(0)
    for k, m in enumerate(means):
        draws = schedule.sample(rng, 4000, k, rounds)
        assert draws.min() >= 0 and draws.max() <= 1 and abs(draws.mean() - m) < 0.02
    assert (schedule.sample(rng, 10, rounds - 1, rounds) == 1.0).all()


def test_official_beta_schedule_starts_at_exactly_zero():
    schedule = GiftBetaLambda(concentration=10, first_mean=0.0)
    assert (schedule.sample(np.random.default_rng(0), 10, 0, 5) == 0.0).all()
    assert [schedule.mean(k, 5) for k in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]


def _setup(layer: int):
    """Target inputs equal the source inputs and the source labels are the teacher's own
    predictions, so every source example finds a partner (itself among others)."""
    torch.manual_seed(0)
    domains = RotatedMoons(pool_size=64, intermediate_pool_size=8, test_size=8, intermediate_domains=0)
    student = MLP(input_dim=2, num_classes=2, hidden=(16, 16))
    teacher = MLP(input_dim=2, num_classes=2, hidden=(16, 16))
    x = torch.randn(32, 2)
    with torch.no_grad():
        labels = teacher(x)["logits"].argmax(-1)
    batch = {"inputs": x, "label": labels, "target_inputs": x.clone(), "pair_uniform": torch.rand(32),
             "mix_layer": layer}
    return domains, student, teacher, batch


def _grads(model, loss):
    model.zero_grad()
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def test_lambda_zero_is_exactly_a_source_training_step():
    domains, student, teacher, batch = _setup(layer=0)
    task = GiftTask(domains, teacher, round_index=0, rounds=5, lambdas=GiftBetaLambda(first_mean=0.0),
                    mix_layers=[0], drop_fraction=0.0)
    batch["lambda"] = torch.zeros(32)
    loss, metrics = task.loss(student, batch)
    assert float(metrics["paired_fraction"]) == 1.0
    source_loss, _ = classification_loss(student(batch["inputs"]), batch["label"])
    assert torch.allclose(loss, source_loss)
    for mixed, plain in zip(_grads(student, loss), _grads(student, classification_loss(
            student(batch["inputs"]), batch["label"])[0])):
        assert torch.allclose(mixed, plain, atol=1e-7)


@pytest.mark.parametrize("mixed_labels", ["pair", "teacher"])
def test_lambda_one_uses_only_target_features(mixed_labels):
    domains, student, teacher, batch = _setup(layer=1)
    task = GiftTask(domains, teacher, round_index=0, rounds=1, lambdas=GiftLinearLambda(), mix_layers=[1],
                    mixed_labels=mixed_labels, drop_fraction=0.0)
    batch["lambda"] = torch.ones(32)
    loss, _ = task.loss(student, batch)
    moved = dict(batch, inputs=torch.randn(32, 2) * 5)  # other source images, the same labels
    assert torch.equal(task.loss(student, moved)[0], loss)
    source = batch["inputs"].clone().requires_grad_(True)
    task_no_stop = GiftTask(domains, teacher, round_index=0, rounds=1, lambdas=GiftLinearLambda(),
                            mix_layers=[1], mixed_labels=mixed_labels, drop_fraction=0.0, stop_gradient=False)
    task_no_stop.loss(student, dict(batch, inputs=source))[0].backward()
    assert source.grad is None or not source.grad.any()


def test_mix_interpolates_per_example():
    a, b = torch.zeros(3, 2, 2), torch.ones(3, 2, 2)
    mixed = mix(a, b, torch.tensor([0.0, 0.25, 1.0]))
    assert mixed[0].eq(0).all() and mixed[1].eq(0.25).all() and mixed[2].eq(1).all()


def test_batches_cycle_the_mix_layers_split_sources_across_ranks_and_give_each_every_target():
    """Each rank pairs its sources among all the step's targets, as one rank with the whole batch does."""
    domains = RotatedMoons(pool_size=64, intermediate_pool_size=8, test_size=8, intermediate_domains=0)
    task = GiftTask(domains, torch.nn.Identity(), round_index=1, rounds=3, mix_layers=[0, 2, 1])
    whole = task.batches("train", Shard(batch_size=8, seed=3))
    assert [next(whole)["mix_layer"] for _ in range(4)] == [0, 2, 1, 0]
    one = next(task.batches("train", Shard(batch_size=8, seed=3)))
    halves = [next(task.batches("train", Shard(batch_size=8, seed=3, rank=r, world_size=2))) for r in range(2)]
    for key in ("inputs", "label", "lambda", "pair_uniform"):
        assert torch.equal(torch.cat([h[key] for h in halves]), one[key])
    assert all(torch.equal(h["target_inputs"], one["target_inputs"]) for h in halves)


def test_mixing_beyond_the_models_layers_is_a_config_error():
    domains, student, teacher, batch = _setup(layer=3)
    task = GiftTask(domains, teacher, round_index=0, rounds=2, mix_layers=[3])
    with pytest.raises(ConfigError, match="has 2 stages"):
        task.loss(student, dict(batch, **{"lambda": torch.zeros(32)}))
    with pytest.raises(ConfigError, match="StagedModel"):
        task.loss(torch.nn.Linear(2, 2), dict(batch, **{"lambda": torch.zeros(32)}))


@pytest.mark.parametrize("settings", [dict(mix_layers=[]), dict(mix_layers=[-1]), dict(mixed_labels="soft"),
                                      dict(source_weight=0.0, mix_weight=0.0), dict(drop_fraction=1.5)])
def test_bad_gift_settings_are_config_errors(settings):
    domains = RotatedMoons(pool_size=8, intermediate_pool_size=8, test_size=8, intermediate_domains=0)
    with pytest.raises(ConfigError):
        GiftTask(domains, torch.nn.Identity(), round_index=0, rounds=2, **settings)


@pytest.mark.parametrize("name", ["mlp", "cnn", "vit"])
def test_gift_mixes_at_every_layer_of_each_staged_model(name):
    from models.cnn import SmallCNN
    from models.vit import ViT
    from tasks.adaptation.domain_shift import RotatedDigits
    build = {"mlp": lambda: MLP(input_dim=64, num_classes=10, hidden=(16, 16)),
             "cnn": lambda: SmallCNN(channels=1, num_classes=10, widths=(4, 8)),
             "vit": lambda: ViT(image_size=8, patch_size=4, channels=1, num_classes=10, d_model=8, num_heads=2,
                                num_layers=2)}[name]
    torch.manual_seed(0)
    domains = RotatedDigits(image_size=8, intermediate_domains=0, pool_size=40)
    student, teacher = build(), build()
    layers = list(range(student.num_stages + 1))
    task = GiftTask(domains, teacher, round_index=1, rounds=3, mix_layers=layers, drop_fraction=0.0)
    batches = task.batches("train", Shard(batch_size=16))
    for _ in layers:
        batch = next(batches)
        with torch.no_grad():  # give every source example a partner: a random teacher sees one class
            batch["label"] = teacher(batch["target_image"])["logits"].argmax(-1)
        loss, metrics = task.loss(student, batch)
        student.zero_grad()
        loss.backward()
        assert torch.isfinite(loss) and float(metrics["paired_fraction"]) == 1.0
        assert any(p.grad is not None and p.grad.any() for p in student.head.parameters())
