"""The Universal Transformer's recurrent encoder: one shared block applied step after step.

Each step adds the coordinate embedding P^t (sinusoidal position + sinusoidal step number, as in
Dehghani et al.) before the block. Depth is either fixed (a weight-tied Transformer) or chosen by
adaptive computation time; the block may return (state, extras) to report per-step diagnostics
such as router weights.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from engine.errors import require, require_int
from models.layers.act import AdaptiveComputationTime, PonderResult, fixed_depth
from models.layers.positions import sinusoid


def coordinate_signal(length: int, step: int, d_model: int, device: torch.device) -> torch.Tensor:
    """P^t (length, d_model): the timing signal of each position plus that of step t."""
    positions = sinusoid(torch.arange(length, device=device), d_model)
    return positions + sinusoid(torch.tensor(step, device=device), d_model)


class RecurrentEncoder(nn.Module):
    """Applies `block` (forward(state, mask) -> state or (state, extras)) up to `max_steps` times.

    With `act` None the block runs exactly `max_steps` times; otherwise `act` decides.
    `forward` returns the final hidden states (the staged-model view); `run` also returns the
    ponder statistics and every step's extras (lists of tensors over the active rows).
    """

    def __init__(self, block: nn.Module, d_model: int, *, max_steps: int,
                 act: AdaptiveComputationTime | None = None, coordinates: bool = True) -> None:
        super().__init__()
        require_int(max_steps, "max_steps", low=1)
        require(act is None or act.max_steps == max_steps, "the ACT module's max_steps must match the encoder's")
        self.block = block
        self.d_model = d_model
        self.max_steps = max_steps
        self.act = act
        self.coordinates = coordinates

    def run(self, state: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[PonderResult, list[Any]]:
        extras: list[Any] = []

        def step(h: torch.Tensor, n: int, key_mask: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
            if self.coordinates:
                h = h + coordinate_signal(h.shape[1], n, self.d_model, h.device).to(h.dtype)
            out = self.block(h, key_mask)
            if isinstance(out, tuple):
                out, extra = out
                extras.append(extra)
            return out

        # A block may hold what is fixed for one pass (generated pool weights) across its steps.
        with getattr(self.block, "recurrence", contextlib.nullcontext)():
            if self.act is None:
                return fixed_depth(step, state, mask, self.max_steps), extras
            return self.act(step, state, mask), extras

    def forward(self, state: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.run(state, mask)[0].output
