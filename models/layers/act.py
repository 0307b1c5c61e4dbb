"""Adaptive computation time (Graves 2016) for recurrent encoders such as the Universal Transformer.

One halting unit decides, per position or per example, how many times a shared step is applied;
the output is the halting-weighted sum of the states (Graves' "accumulated" form) and the ponder
cost N + R comes back for the loss. Examples whose every position has halted leave the batch
(gather/scatter), so wall-clock falls with ponder time instead of only being masked.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn

from engine.errors import require, require_int
from models.layers.pooling import pool

HALTING_LEVELS = ("per_token", "per_example")

#: A recurrent step: (state (n, L, d), step number from 1, key mask (n, L) or None, rows) -> new state.
#: `rows` holds the indices, in the full batch, of the n examples still running.
StepFn = Callable[[torch.Tensor, int, "torch.Tensor | None", torch.Tensor], torch.Tensor]


@dataclasses.dataclass
class PonderResult:
    """What an adaptive (or fixed-depth) recurrent encoder hands back, in the original batch order."""

    output: torch.Tensor      # (B, L, d): sum over steps n of weight_n * state_n
    steps: torch.Tensor       # (B, L): N, the number of updates each position received (0 at padding)
    remainders: torch.Tensor  # (B, L): R = 1 - sum of the halting probabilities before step N
    mask: torch.Tensor        # (B, L): True at real positions

    @property
    def ponder_cost(self) -> torch.Tensor:
        """Graves' rho = N + R per position (differentiable through R only)."""
        return self.steps + self.remainders

    def per_example(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of a (B, L) quantity over each example's real positions."""
        return pool(values[..., None], self.mask, "mean")[:, 0]


class AdaptiveComputationTime(nn.Module):
    """Runs a step function until the halting probabilities reach 1 - epsilon or `max_steps`.

    `level='per_token'` halts each position on its own (a halted position keeps its state, which
    other positions still attend to); `'per_example'` averages the halting probability over an
    example's real positions so the whole example stops at once. `halting_bias_init` sets the
    initial halting probability sigmoid(b): a large positive bias halts everything after one or
    two steps at initialisation (the "shallow equilibrium" trap), a negative one starts deep.
    With `normalize`, the halting unit reads the layer-normed state: a pre-norm residual stream
    grows step after step, which would otherwise drift the halting logits with depth alone.
    """

    def __init__(self, d_model: int, *, max_steps: int, epsilon: float = 0.01, halting_bias_init: float = -1.0,
                 level: str = "per_token", shrink_batch: bool = True, normalize: bool = True) -> None:
        super().__init__()
        require_int(max_steps, "ACT max_steps", low=1)
        require(0.0 < epsilon < 1.0, f"ACT epsilon must be in (0, 1), got {epsilon!r}")
        require(level in HALTING_LEVELS, f"ACT level must be one of {HALTING_LEVELS}, got {level!r}")
        self.max_steps = max_steps
        self.threshold = 1.0 - epsilon
        self.level = level
        self.shrink_batch = shrink_batch
        self.norm = nn.LayerNorm(d_model) if normalize else nn.Identity()
        self.halting = nn.Linear(d_model, 1)
        nn.init.zeros_(self.halting.weight)  # at init every position halts with p = sigmoid(bias)
        nn.init.constant_(self.halting.bias, halting_bias_init)

    def halting_probability(self, state: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """p (n, L) from the updated states; per example, the masked mean over positions."""
        p = torch.sigmoid(self.halting(self.norm(state)).squeeze(-1).float())
        if self.level == "per_example":
            p = pool(p[..., None], mask, "mean").expand_as(p)
        return p

    def forward(self, step: StepFn, state: torch.Tensor, mask: torch.Tensor | None = None) -> PonderResult:
        """Apply `step` adaptively to `state` (B, L, d); `mask` (B, L) marks real positions."""
        batch, length, _ = state.shape
        real = torch.ones(batch, length, dtype=torch.bool, device=state.device) if mask is None else mask.bool()
        rows = torch.arange(batch, device=state.device)
        # Running quantities for the examples still in the batch; padding counts as halted.
        halted = ~real
        cumulative = state.new_zeros(batch, length, dtype=torch.float32)
        remainders = torch.zeros_like(cumulative)
        steps = torch.zeros_like(cumulative)
        accumulated = torch.zeros_like(state)
        active_mask = mask
        finished: list[tuple[torch.Tensor, ...]] = []
        for n in range(1, self.max_steps + 1):
            updated = step(state, n, active_mask, rows)
            updated = torch.where(halted[..., None], state, updated)  # halted positions stay frozen
            p = self.halting_probability(updated, active_mask)
            running = ~halted
            stops = running & ((cumulative + p >= self.threshold) | (n == self.max_steps))
            continues = running & ~stops
            # 1 - cumulative, tied to p with a zero weight: after a first-step halt R is a constant,
            # and the ponder cost would leave the graph on that rank alone (ZeRO-3 needs every
            # rank to run the same backward hooks).
            remainder = 1.0 - cumulative + 0.0 * p
            weight = torch.where(continues, p, torch.where(stops, remainder, torch.zeros_like(p)))
            accumulated = accumulated + weight.to(state.dtype)[..., None] * updated
            remainders = torch.where(stops, remainder, remainders)
            cumulative = cumulative + torch.where(continues, p, torch.zeros_like(p))
            steps = steps + running.float()
            halted = halted | stops
            state = updated
            done = halted.all(dim=1)
            if bool(done.all()):
                finished.append((rows, accumulated, steps, remainders))
                break
            if self.shrink_batch and bool(done.any()):
                finished.append((rows[done], accumulated[done], steps[done], remainders[done]))
                keep = ~done
                rows, state, accumulated = rows[keep], state[keep], accumulated[keep]
                halted, cumulative, remainders, steps = halted[keep], cumulative[keep], remainders[keep], steps[keep]
                active_mask = None if mask is None else mask[rows]
        return _in_batch_order(finished, real)


def _in_batch_order(pieces: list[tuple[torch.Tensor, ...]], mask: torch.Tensor) -> PonderResult:
    """Scatter the pieces of examples that left the batch at different steps back into order."""
    if len(pieces) == 1 and pieces[0][0].numel() == mask.shape[0]:
        rows, output, steps, remainders = pieces[0]
    else:
        rows, output, steps, remainders = (torch.cat(parts) for parts in zip(*pieces))
    order = torch.argsort(rows)
    if not torch.equal(rows, torch.arange(len(rows), device=rows.device)):
        output, steps, remainders = output[order], steps[order], remainders[order]
    return PonderResult(output=output, steps=steps, remainders=remainders, mask=mask)


def fixed_depth(step: StepFn, state: torch.Tensor, mask: torch.Tensor | None, num_steps: int) -> PonderResult:
    """Apply `step` exactly `num_steps` times (a weight-tied Transformer); output = last state."""
    batch, length, _ = state.shape
    real = torch.ones(batch, length, dtype=torch.bool, device=state.device) if mask is None else mask.bool()
    rows = torch.arange(batch, device=state.device)
    for n in range(1, num_steps + 1):
        state = step(state, n, mask, rows)
    steps = real.float() * num_steps
    return PonderResult(output=state, steps=steps, remainders=torch.zeros_like(steps), mask=real)
