"""Training of the small fixed classifiers that generative metrics measure in (KID, precision and
recall, class balance): stand-ins for Inception on synthetic data.

The task owns such a network (docs/design.md): it is trained here once, deterministically, under its
own seeded RNG (the caller's random streams are untouched), with gradients and full precision
even when called from inside an evaluation, and it is frozen afterwards.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from engine.data import frozen
from tasks.common.classification import logits_of


def train_fixed_classifier(build: Callable[[], nn.Module], inputs: torch.Tensor, labels: torch.Tensor, *,
                           steps: int, batch_size: int, seed: int, lr: float,
                           one_cycle: bool = False) -> nn.Module:
    """Build a network under `seed` and fit it with AdamW on random mini-batches of
    (`inputs`, `labels`); `one_cycle` anneals the rate with OneCycleLR (peak `lr`). The network's
    output may be logits or a dict holding 'logits'. Returns it frozen."""
    with torch.random.fork_rng(devices=[]), torch.enable_grad(), torch.autocast("cpu", enabled=False):
        torch.manual_seed(seed)
        network = build()
        optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps) if one_cycle else None
        generator = torch.Generator().manual_seed(seed)
        network.train()
        for _ in range(steps):
            chosen = torch.randint(0, len(labels), (batch_size,), generator=generator)
            output = network(inputs[chosen])
            loss = F.cross_entropy(logits_of(output), labels[chosen])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
    return frozen(network)
