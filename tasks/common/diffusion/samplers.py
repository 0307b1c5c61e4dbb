"""Samplers of the reverse process: DDPM ancestral sampling and DDIM with its eta.

A sampler only sees a `Denoiser`, a function (x_t, t) -> output under the diffusion's
parameterisation, so one sampler serves image fields, point sets or latent vectors; context
refreshing, chunking and classifier-free guidance are all built into the denoiser by the caller.
"""
from __future__ import annotations

import abc
from typing import Callable, Sequence

import gin
import torch

from engine.errors import ConfigError, require_int, require_number
from tasks.common.diffusion.gaussian import GaussianDiffusion

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: Called after every step with (index, t, x_t before the step, predicted x_0).
StepHook = Callable[[int, int, torch.Tensor, torch.Tensor], None]


def _noise_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # Draw on the generator's device (a CPU generator keeps GPU runs reproducible), then move.
    device = x.device if generator is None else generator.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


class Sampler(abc.ABC):
    """Walks a chain of timesteps t_1 > t_2 > ... > t_n, then to s = -1 (clean data)."""

    name = "sampler"

    def __init__(self, *, steps: int | None = None, clip: Sequence[float] | None = (-1.0, 1.0)) -> None:
        if steps is not None:
            require_int(steps, f"{type(self).__name__}.steps", low=1, hint="None walks every step of the diffusion")
        if clip is not None and (len(clip) != 2 or not clip[0] < clip[1]):
            raise ConfigError(f"{type(self).__name__}.clip must be None or (low, high) with low < high, got {clip!r}")
        self.steps = steps
        self.clip = None if clip is None else (float(clip[0]), float(clip[1]))

    @abc.abstractmethod
    def step(self, diffusion: GaussianDiffusion, x_t: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
             x0: torch.Tensor, eps: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """x_s from x_t, given the denoiser's x0 and eps predictions at t."""

    @torch.no_grad()
    def __call__(self, diffusion: GaussianDiffusion, denoise: Denoiser, x_T: torch.Tensor, *,
                 generator: torch.Generator | None = None, on_step: StepHook | None = None) -> torch.Tensor:
        """Denoise `x_T` (a draw of N(0, I), any shape with the batch first) into samples of x_0."""
        chain = diffusion.timesteps(self.steps)
        x = x_T
        batch = x.shape[0]
        for index, (current, following) in enumerate(zip(chain, chain[1:] + [-1])):
            t = torch.full((batch,), current, dtype=torch.long, device=x.device)
            s = torch.full((batch,), following, dtype=torch.long, device=x.device)
            x0, eps = diffusion.x0_and_eps(denoise(x, t), x, t, clip=self.clip)
            if on_step is not None:
                on_step(index, current, x, x0)
            x = self.step(diffusion, x, t, s, x0, eps, generator)
        return x


@gin.configurable
class DDPMSampler(Sampler):
    """Ancestral sampling from the posterior q(x_s | x_t, x_0 = predicted x_0).

    With `steps = None` it walks all T steps (exact DDPM); fewer steps walk a respaced chain
    whose per-step betas are 1 - alpha_bar_t / alpha_bar_s (Nichol & Dhariwal's respacing).
    """

    name = "ddpm"

    def step(self, diffusion, x_t, t, s, x0, eps, generator):
        mean, variance = diffusion.posterior(x0, x_t, t, s)
        if int(s[0]) < 0:
            return mean  # the last step returns the posterior mean, which is the predicted x_0
        return mean + variance.sqrt() * _noise_like(x_t, generator)


@gin.configurable
class DDIMSampler(Sampler):
    """DDIM (Song et al.): x_s = a_s x0 + sqrt(1 - a_s^2 - sigma^2) eps + sigma z with
    sigma = eta sqrt((1 - alpha_bar_s) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_s).

    eta = 0 is deterministic given x_T; eta = 1 on the full chain is DDPM's ancestral sampler.
    """

    name = "ddim"

    def __init__(self, *, steps: int | None = 50, eta: float = 0.0,
                 clip: Sequence[float] | None = (-1.0, 1.0)) -> None:
        super().__init__(steps=steps, clip=clip)
        require_number(eta, "DDIMSampler.eta", low=0)
        self.eta = float(eta)

    def step(self, diffusion, x_t, t, s, x0, eps, generator):
        alpha_bar_t = diffusion.alpha_bar_at(t, x_t)
        alpha_bar_s = diffusion.alpha_bar_at(s, x_t)
        sigma = self.eta * ((1 - alpha_bar_s) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_s)).sqrt()
        direction = (1 - alpha_bar_s - sigma ** 2).clamp(min=0).sqrt()
        x_s = alpha_bar_s.sqrt() * x0 + direction * eps
        if self.eta > 0 and int(s[0]) >= 0:
            x_s = x_s + sigma * _noise_like(x_t, generator)
        return x_s
