"""The attention axis of the composition matrix: every registered attention core in every model
that builds MultiHeadAttention (and the variants that route a core differently), built through
gin with `MultiHeadAttention.attention = @Core`, one forward and backward on the model's own task,
without and with a key padding mask: finite loss, a finite gradient on every trainable parameter.

A pairing that cannot work by construction (a core without keys or with position tables asked to
cross-attend, a core that T5's relative position bias cannot reach, a core needing max_len that
nothing binds) fails while the model is built, with one ConfigError that names both the core
and the model; the cells assert exactly that.
"""
from __future__ import annotations

import functools
import inspect

import pytest
import torch

from engine import config
from engine.errors import ConfigError
from models.layers import MultiHeadAttention, can_cross_attend
from tests.composition.recipes import (ATTENTION_VARIANTS, RECIPES, attention_cores, recipe, registered_models,
                                       required_settings)

CORES = attention_cores()
MODELS = sorted(name for name, r in RECIPES.items() if r.attends_over) + sorted(ATTENTION_VARIANTS)


def model_name() -> str:
    return config.gin.query_parameter("train.model").configurable.name


@functools.lru_cache(maxsize=None)
def task_and_batch(name: str):
    """The family's task (it does not depend on the core) and a training batch of 2."""
    r = recipe(name)
    config.reset()
    config.parse(list(r.files), list(r.bindings))
    task = config.built("train.task")
    return task, task.example_batch(2)


def build(name: str, core: str, *, bind_settings: bool = True) -> torch.nn.Module:
    r = recipe(name)
    settings = [f"{core}.{s} = {r.attends_over}" for s in required_settings(CORES[core])] if bind_settings else []
    config.reset()
    config.parse(list(r.files), list(r.bindings) + [f"MultiHeadAttention.attention = @{core}"] + settings)
    torch.manual_seed(0)
    return config.built("train.model")


def expected_error(name: str, core: str) -> str | None:
    """What must stop this pairing at construction (a word the message has), or None."""
    r, cls = recipe(name), CORES[core]
    if r.position_bias and "position_bias" not in inspect.signature(cls.forward).parameters:
        return "T5.positions"
    if r.cross_attends and not can_cross_attend(cls):  # the core's class declares what it can do
        return "cross-attention"
    return None


def pad_every_core(model: torch.nn.Module) -> list:
    """Hooks that give every core call without a key mask one whose last key of the last example
    is padding (self- and cross-attention alike): the masked path of every core in the model."""
    def hook(module, args, kwargs):
        q, k, v = args[:3]
        if (args[3] if len(args) > 3 else kwargs.get("key_mask")) is None:
            mask = torch.ones(v.shape[0], v.shape[2], dtype=torch.bool, device=v.device)
            mask[-1, -1] = False
            args = (q, k, v, mask, *args[4:])
            kwargs = {k_: v_ for k_, v_ in kwargs.items() if k_ != "key_mask"}
        return args, kwargs

    cores = [m.core for m in model.modules() if isinstance(m, MultiHeadAttention)]
    return [core.register_forward_pre_hook(hook, with_kwargs=True) for core in cores]


def step(model: torch.nn.Module, task, batch) -> None:
    model.zero_grad(set_to_none=True)
    loss, _ = task.loss(model, batch)
    assert torch.isfinite(loss), loss
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reaches {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients in {bad[:5]}"


@pytest.mark.parametrize("core", sorted(CORES))
@pytest.mark.parametrize("name", MODELS)
def test_core_in_model(name, core):
    task, batch = task_and_batch(name)
    wanted = expected_error(name, core)
    if wanted:
        with pytest.raises(ConfigError) as caught:
            build(name, core)
        message = config.format_error(caught.value)
        assert wanted in message and core in message and model_name() in message, message
        return
    model = build(name, core).train()
    # Some layers fix their core (T5's decoder, CLIP's causal text tower); the binding must reach the rest.
    assert any(type(m.core).__name__ == core for m in model.modules() if isinstance(m, MultiHeadAttention)), \
        "the binding reached no core of the model"
    step(model, task, batch)
    hooks = pad_every_core(model)
    try:
        step(model, task, batch)
    finally:
        for hook in hooks:
            hook.remove()


NEEDS_SETTINGS = sorted(name for name, cls in CORES.items() if required_settings(cls))


@pytest.mark.parametrize("core", NEEDS_SETTINGS)
@pytest.mark.parametrize("name", sorted(name for name, r in RECIPES.items() if r.attends_over))
def test_core_needing_a_setting_nothing_binds_names_the_core_and_the_model(name, core):
    """LinformerAttention.max_len (and the like) has no default: without a binding the model
    does not build, and the one-line error says which binding, for which core, in which model."""
    with pytest.raises(ConfigError) as caught:
        build(name, core, bind_settings=False)
    message = config.format_error(caught.value)
    assert all(f"{core}.{s}" in message for s in required_settings(CORES[core])), message
    assert model_name() in message, message


def test_every_registered_model_has_a_recipe_or_a_reason():
    """A model registered later joins the matrix by adding a recipe (tests/composition/recipes.py)."""
    from tests.composition.recipes import NOT_FAMILIES
    assert set(registered_models()) == set(RECIPES) | set(NOT_FAMILIES)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipes_say_which_models_take_a_gin_selected_core(name):
    """`attends_over` marks the models the attention axis crosses: exactly those whose built
    module holds a MultiHeadAttention."""
    r = recipe(name)
    config.reset()
    config.parse(list(r.files), list(r.bindings))
    model = config.built("train.model")
    assert any(isinstance(m, MultiHeadAttention) for m in model.modules()) == (r.attends_over is not None)
