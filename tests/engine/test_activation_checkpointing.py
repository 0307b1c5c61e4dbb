"""train.activation_checkpointing: the chosen blocks keep only their inputs for backward and
recompute the rest, so fewer bytes are saved, while losses and gradients stay exactly those of
the model without it (dropout replayed), in one process and on 2 ranks under every strategy."""
from __future__ import annotations

import copy

import pytest
import torch

from engine.activation_checkpointing import checkpoint_activations
from engine.blocks import find_blocks
from engine.errors import ConfigError
from models.transformer import TransformerClassifier
from models.universal import UniversalTransformerClassifier
from tests.engine import torchrun
from tests.engine.torchrun import BINDINGS, reference_run
from tests.helpers import TINY_PVR, losses, train_in_process


def transformer(dropout: float = 0.1) -> TransformerClassifier:
    torch.manual_seed(0)
    return TransformerClassifier(vocab_size=11, num_classes=5, max_len=32, d_model=32, num_heads=4, num_layers=3,
                                 dropout=dropout)


def step(model: torch.nn.Module, tokens: torch.Tensor, labels: torch.Tensor) -> tuple[float, dict[str, torch.Tensor]]:
    """One loss and backward from a fixed RNG state; the loss and every gradient."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    out = model(tokens)
    loss = torch.nn.functional.cross_entropy(out["logits"], labels) + out.get("ponder_loss", 0.0)
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def saved_bytes(model: torch.nn.Module, tokens: torch.Tensor) -> int:
    """Bytes autograd keeps for backward across one forward (the activation memory)."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(tokens)["logits"].sum()
    return total


def batch(length: int = 32, size: int = 4):
    generator = torch.Generator().manual_seed(1)
    return (torch.randint(0, 11, (size, length), generator=generator),
            torch.randint(0, 5, (size,), generator=generator))


def test_losses_and_gradients_equal_those_without_and_dropout_is_replayed():
    plain = transformer(dropout=0.1)
    recomputing = copy.deepcopy(plain)
    blocks = checkpoint_activations(recomputing)
    assert len(blocks) == 3 and all(getattr(b, "recomputes_activations", False) for b in blocks)
    tokens, labels = batch()
    plain.train(), recomputing.train()
    loss, grads = step(plain, tokens, labels)
    loss_ac, grads_ac = step(recomputing, tokens, labels)
    assert loss_ac == loss
    assert grads.keys() == grads_ac.keys()
    for name in grads:
        torch.testing.assert_close(grads_ac[name], grads[name], rtol=0, atol=0, msg=name)


def test_halting_model_recomputes_as_one_block_with_equal_gradients():
    torch.manual_seed(0)
    plain = UniversalTransformerClassifier(vocab_size=11, num_classes=5, max_len=32, d_model=32, num_heads=4,
                                           max_steps=4, act=True)
    recomputing = copy.deepcopy(plain)
    checkpoint_activations(recomputing)
    tokens, labels = batch()
    loss, grads = step(plain, tokens, labels)
    loss_ac, grads_ac = step(recomputing, tokens, labels)
    assert loss_ac == loss
    for name in grads:
        torch.testing.assert_close(grads_ac[name], grads[name], rtol=0, atol=0, msg=name)


def test_fewer_bytes_are_kept_for_backward():
    plain = transformer(dropout=0.0)
    recomputing = copy.deepcopy(plain)
    checkpoint_activations(recomputing)
    tokens, _ = batch(length=32)
    assert saved_bytes(recomputing, tokens) < 0.5 * saved_bytes(plain, tokens)


def test_names_state_dict_and_evaluation_are_unchanged():
    plain = transformer()
    recomputing = copy.deepcopy(plain)
    checkpoint_activations(recomputing)
    assert type(recomputing.blocks[0]).__name__ == type(plain.blocks[0]).__name__
    assert list(recomputing.state_dict()) == list(plain.state_dict())
    plain.eval(), recomputing.eval()
    tokens, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(recomputing(tokens)["logits"], plain(tokens)["logits"], rtol=0, atol=0)
    # A copy recomputes with its own weights, not the original's.
    twin = copy.deepcopy(recomputing)
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(1.0)
        assert not torch.equal(twin(tokens)["logits"], recomputing(tokens)["logits"])


def test_class_names_choose_the_blocks_and_nothing_matching_is_an_error():
    model = transformer()
    assert find_blocks(model, ["TransformerBlock"]) == list(model.blocks)
    with pytest.raises(ConfigError, match="NoSuchBlock"):
        checkpoint_activations(model, ["NoSuchBlock"])
    with pytest.raises(ConfigError, match="no block"):
        checkpoint_activations(torch.nn.Linear(3, 3))


@pytest.mark.parametrize("value", ["TransformerBlock", [], [3], 1])
def test_bad_switch_values_are_config_errors(tmp_path, value):
    with pytest.raises(ConfigError, match="activation_checkpointing"):
        train_in_process(str(tmp_path / "run"), TINY_PVR + ["train.steps = 1", f"train.activation_checkpointing = {value!r}"])


def test_training_with_it_logs_the_same_losses(tmp_path):
    bindings = TINY_PVR + ["train.steps = 6", "TransformerClassifier.dropout = 0.1"]
    plain = losses(train_in_process(str(tmp_path / "plain"), bindings).workdir)
    recomputing = losses(train_in_process(str(tmp_path / "ac"), bindings + ["train.activation_checkpointing = True"]).workdir)
    assert recomputing == plain and len(plain) == 6


@pytest.mark.distributed
@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "deepspeed_zero3"])
def test_two_ranks_with_it_match_the_same_run_without(tmp_path, shared_dir, strategy):
    expected = losses(reference_run(shared_dir, strategy))
    workdir = str(tmp_path / "run")
    torchrun.run(workdir, strategy, bindings=BINDINGS + ["train.activation_checkpointing = True"])
    assert losses(workdir) == expected
