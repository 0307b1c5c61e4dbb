"""A model's blocks: the units that FSDP shards one by one and that activation checkpointing
recomputes, chosen by one rule so that both act on the same modules."""
from __future__ import annotations

from typing import Sequence

from torch import nn


def find_blocks(module: nn.Module, class_names: Sequence[str] | None) -> list[nn.Module]:
    """The modules to shard (or recompute) one by one: instances of `class_names`, or by default every element
    of every nn.ModuleList (outermost first; nothing inside an already chosen block). A module
    marked `shard_as_one` (it runs its children a data-dependent number of times, e.g. ACT) is a
    block of its own under either rule, and nothing inside it is sharded separately: a block
    inside would gather its weights a different number of times on each rank."""
    chosen: list[nn.Module] = []
    inside: set[int] = set()
    for _, sub in module.named_modules():
        if id(sub) in inside or sub is module:
            continue
        if getattr(sub, "shard_as_one", False):
            candidates = [sub]
        elif class_names is not None:
            hit = type(sub).__name__ in class_names
            candidates = [sub] if hit else []
        else:  # a ModuleList inside a ModuleList (PerceiverEncoder.thinks) has no forward: its elements are the blocks
            candidates = [b for b in sub if not isinstance(b, nn.ModuleList)] if isinstance(sub, nn.ModuleList) else []
        for block in candidates:
            if id(block) not in inside and any(p.requires_grad for p in block.parameters()):
                chosen.append(block)
                inside.update(id(m) for m in block.modules())
    return chosen
