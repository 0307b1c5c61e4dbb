"""Classifier-free guidance (Ho & Salimans): train one denoiser with the condition sometimes
replaced by a null condition, then sample with (1 + w) * conditional - w * unconditional.

Every parameterisation (eps, x0, v) is affine in eps for fixed (x_t, t), so guiding the raw
outputs equals guiding eps; the guided denoiser plugs into any sampler unchanged.
"""
from __future__ import annotations

from typing import Callable

import torch

from tasks.common.diffusion.samplers import Denoiser

#: (x_t, t, condition) -> output; `condition` has the batch first (labels, vectors...).
ConditionalDenoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def drop_condition(condition: torch.Tensor, null_condition: torch.Tensor | int | float, probability: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each example's condition by `null_condition` with `probability` (training side)."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"the condition-dropout probability must lie in [0, 1], got {probability}")
    keep = torch.rand(condition.shape[0], generator=generator, device=condition.device) >= probability
    keep = keep.view(-1, *([1] * (condition.dim() - 1)))
    null = torch.as_tensor(null_condition, dtype=condition.dtype, device=condition.device)
    return torch.where(keep, condition, null.expand_as(condition))


def classifier_free_guidance(denoise: ConditionalDenoiser, condition: torch.Tensor,
                             null_condition: torch.Tensor | int | float, scale: float) -> Denoiser:
    """A denoiser (x_t, t) -> (1 + scale) * denoise(x_t, t, condition) - scale * denoise(x_t, t, null).

    `scale` = 0 is the plain conditional model; both branches run as one batch of twice the size.
    """
    null = torch.as_tensor(null_condition, dtype=condition.dtype, device=condition.device).expand_as(condition)
    if scale == 0:
        return lambda x_t, t: denoise(x_t, t, condition)

    def guided(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        both = denoise(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([condition, null]))
        conditional, unconditional = both.chunk(2)
        return (1 + scale) * conditional - scale * unconditional

    return guided
