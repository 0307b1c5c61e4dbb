"""Activation checkpointing: a block keeps only its inputs for backward and runs its forward again
there, trading about one more forward pass for the memory of every activation inside the block.

`train.activation_checkpointing = True` recomputes the blocks FSDP shards (engine/blocks.py: the
elements of every ModuleList, or `FSDP.shard_modules` when that is bound); a list of class names
picks other blocks. It is applied to the plain model before any strategy wraps it (as torchtitan
does), so it works alike under single, ddp, fsdp, deepspeed and fairscale. The recomputation
replays the forward's random state (dropout), so losses and gradients equal those without it.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from engine.blocks import find_blocks
from engine.errors import ConfigError

_CLASSES: dict[type, type] = {}


def _checkpointed_class(cls: type) -> type:
    """`cls` with a forward that is recomputed in backward. The subclass keeps the name, so the
    model prints, shards and reports as before; the state dict and parameter names do not change."""
    if getattr(cls, "recomputes_activations", False):
        return cls
    if cls not in _CLASSES:
        def forward(self, *args, **kwargs):
            if not torch.is_grad_enabled():
                return super(subclass, self).forward(*args, **kwargs)
            return checkpoint(super(subclass, self).forward, *args, use_reentrant=False, **kwargs)

        subclass = type(cls.__name__, (cls,), {"forward": forward, "recomputes_activations": True,
                                               "__module__": cls.__module__, "__qualname__": cls.__qualname__})
        _CLASSES[cls] = subclass
    return _CLASSES[cls]


def checkpoint_activations(module: nn.Module, class_names: Sequence[str] | None = None) -> list[nn.Module]:
    """Make every block of `module` (see `find_blocks`) recompute its activations in backward;
    returns the blocks. A ConfigError when nothing matches: a switch that silently does nothing
    would leave a run without the memory it was sized for."""
    blocks = find_blocks(module, class_names)
    if not blocks:
        which = f"no module of class {list(class_names)}" if class_names is not None else "no block (no nn.ModuleList)"
        raise ConfigError(f"train.activation_checkpointing: {type(module).__name__} has {which} to recompute")
    for block in blocks:
        block.__class__ = _checkpointed_class(type(block))
    return blocks


def validate(value: object) -> None:
    """True / False, or a list of block class names."""
    if isinstance(value, bool):
        return
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value or \
            not all(isinstance(name, str) for name in value):
        raise ConfigError("train.activation_checkpointing must be True, False or a list of block class names, "
                          f"got {value!r}")
