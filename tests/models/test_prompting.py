"""Prompt learners on a frozen CLIP: they start as zero-shot CLIP, keep the backbone frozen, and
AAPE's aggregator, distillation and description-free inference behave as the paper says."""
from __future__ import annotations

import functools

import pytest
import torch

from engine.errors import ConfigError
from models.aape import AAPE, DescriptionAggregator
from models.clip import CLIP
from models.prompting import CoCoOp, CoOp, ZeroShotPrompts
from models.text_transformer import TextTransformer
from models.vit import ViT

CLIP_FACTORY = functools.partial(
    CLIP, image_tower=functools.partial(ViT, image_size=8, patch_size=4, channels=3, d_model=16, num_heads=2,
                                        num_layers=1),
    text_tower=functools.partial(TextTransformer, vocab_size=20, max_len=10, eos_id=1, d_model=16, num_heads=2,
                                 num_layers=1),
    embed_dim=8)
NAMES = torch.tensor([[5, 6, 1, 0], [7, 8, 1, 0], [9, 1, 0, 0]])  # three class names, <eos> = 1
TEMPLATE = torch.tensor([3, 4, 10, 3])  # "a photo of a"


def build(cls, **kwargs):
    torch.manual_seed(0)  # the same backbone weights for every learner
    backbone = CLIP_FACTORY()
    torch.manual_seed(1)
    model = cls(clip=lambda: backbone, **kwargs)
    return model


def descriptions(classes: int = 3, count: int = 4):
    tokens = torch.randint(2, 20, (classes, count, 5))
    tokens[..., -1] = 1
    mask = torch.ones(classes, count, dtype=torch.bool)
    mask[0, 2:] = False  # class 0 has only two descriptions
    return tokens, mask


def test_aggregator_weights_sum_to_one_and_ignore_padded_descriptions():
    torch.manual_seed(0)
    aggregator = DescriptionAggregator(8, num_heads=4)
    image, texts = torch.randn(2, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, False, True, False], [True] * 5])
    summary, weights = aggregator(image, texts, mask)
    assert torch.allclose(weights.sum(-1), torch.ones(2))
    assert (weights[0, ~mask[0]] == 0).all() and (weights[1] > 0).all()
    changed = texts.clone()
    changed[0, ~mask[0]] = 100.0  # whatever sits in a padded slot
    assert torch.allclose(aggregator(image, changed, mask)[0], summary, atol=1e-6)
    order = torch.tensor([3, 0, 4, 1, 2])  # permuting the descriptions permutes the weights only
    permuted, permuted_weights = aggregator(image, texts[:, order], mask[:, order])
    assert torch.allclose(permuted, summary, atol=1e-6) and torch.allclose(permuted_weights, weights[:, order])
    assert torch.allclose(summary[1], (weights[1, :, None] * texts[1]).sum(0), atol=1e-6)  # values: the texts


def test_mean_aggregator_averages_the_real_descriptions_only():
    image, texts = torch.randn(2, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, False, True, False], [True] * 5])
    summary, weights = DescriptionAggregator(8, num_heads=4, kind="mean")(image, texts, mask)
    assert torch.allclose(summary[0], texts[0, mask[0]].mean(0), atol=1e-6)
    assert torch.allclose(summary[1], texts[1].mean(0), atol=1e-6)
    assert torch.allclose(weights.sum(-1), torch.ones(2))
    with pytest.raises(ConfigError, match="aggregator"):
        DescriptionAggregator(8, kind="max")


def test_aape_with_a_mean_aggregator_still_distils_the_generator():
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    model = build(AAPE, aggregator="mean")
    assert not list(model.aggregator.parameters())
    task_loss, out = aape_losses(model, images, labels)
    (task_loss + out["aux_loss"]).backward()
    assert float(out["distill"]) > 0 and model.generator[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("cls, kwargs", [(CoOp, {}), (CoCoOp, {}), (AAPE, {}),
                                         (AAPE, {"conditioning": "class_embedding"})])
def test_every_prompt_learner_starts_as_the_zero_shot_classifier(cls, kwargs):
    images = torch.rand(4, 3, 8, 8)
    zero_shot = build(ZeroShotPrompts)(images, NAMES, TEMPLATE)["logits"]
    learner = build(cls, **kwargs)
    assert torch.allclose(learner(images, NAMES, TEMPLATE)["logits"], zero_shot, atol=1e-5)
    trainable = {name for name, p in learner.named_parameters() if p.requires_grad}
    assert trainable and not any(name.startswith("clip.") for name in trainable)


def test_zero_shot_training_cannot_change_a_prediction():
    model = build(ZeroShotPrompts)
    images = torch.rand(6, 3, 8, 8)
    before = model(images, NAMES, TEMPLATE)["logits"].argmax(-1)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(images, NAMES, TEMPLATE)["logits"], torch.tensor([0, 1, 2] * 2))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(model.log_temperature_offset.detach()) != 0.0
    assert torch.equal(model(images, NAMES, TEMPLATE)["logits"].argmax(-1), before)


def test_prompt_learner_loads_backbone_weights_and_keeps_them_frozen():
    donor = build(CoOp).clip
    with torch.no_grad():
        for param in donor.parameters():
            param.add_(0.1)
    model = build(CoCoOp)
    prompts = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("clip.")}
    result = model.load_state_dict(donor.state_dict(), strict=False)  # what train.init_from passes
    assert not result.missing_keys and not result.unexpected_keys
    assert all(torch.equal(model.clip.state_dict()[k], v) for k, v in donor.state_dict().items())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in prompts.items())
    model.load_state_dict(model.state_dict())  # its own checkpoints load as usual
    model.train()
    assert not model.clip.training and all(not p.requires_grad for p in model.clip.parameters())


def aape_losses(model, images, labels):
    tokens, mask = descriptions()
    out = model(images, NAMES, TEMPLATE, labels=labels, descriptions=tokens, description_mask=mask)
    return torch.nn.functional.cross_entropy(out["logits"], labels), out


def generator_grads(model, loss):
    model.zero_grad()
    loss.backward(retain_graph=True)
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.generator.parameters()]


def test_aape_with_lambda_zero_trains_the_generator_on_the_task_loss_alone():
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    for weight in (0.0, 1.0):
        model = build(AAPE, distill_weight=weight)
        with torch.no_grad():
            model.to_context.weight.normal_(0, 0.1)  # away from the zero start, so CE reaches the generator
        task_loss, out = aape_losses(model, images, labels)
        assert float(out["distill"]) > 0 and float(out["aggregator_loss"]) > 0
        total = generator_grads(model, task_loss + out["aux_loss"])
        task_only = generator_grads(model, task_loss)
        same = all(torch.equal(a, b) for a, b in zip(total, task_only))
        assert same == (weight == 0.0)
        assert any(g.abs().sum() > 0 for g in task_only)
        # The aggregator learns from its own loss only; the distillation target is a stop-gradient.
        model.zero_grad()
        out["aux_loss"].backward()
        assert model.aggregator.query.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("conditioning", ["context", "class_embedding"])
def test_aape_reads_no_description_at_test_time(conditioning):
    model = build(AAPE, conditioning=conditioning).eval()
    with torch.no_grad():
        model.to_context.weight.normal_(0, 0.1)
    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    test_time = model(images, NAMES, TEMPLATE)  # no labels, no descriptions
    assert set(test_time) == {"logits", "prompt_embedding"}
    _, training = aape_losses(model, images, labels)
    assert torch.equal(training["logits"], test_time["logits"])  # descriptions only shape the losses


def test_prompt_learner_configuration_errors():
    with pytest.raises(ConfigError, match="context_length = 3 but the task's template has 4 words"):
        build(CoOp, context_length=3)(torch.rand(1, 3, 8, 8), NAMES, TEMPLATE)
    build(CoOp, context_length=3, init="random")(torch.rand(1, 3, 8, 8), NAMES, TEMPLATE)  # needs no template
    with pytest.raises(ConfigError, match="exceeds the text tower's max_len"):
        build(CoOp, context_length=8, init="random")(torch.rand(1, 3, 8, 8), NAMES, TEMPLATE)
    with pytest.raises(ConfigError, match="init must be"):
        build(CoOp, init="words")
    with pytest.raises(ConfigError, match="distill_weight"):
        build(AAPE, distill_weight=-1.0)
    with pytest.raises(ConfigError, match="conditioning must be one of"):
        build(AAPE, conditioning="image")
