"""The discrete Gaussian diffusion q(x_t | x_0) of DDPM: forward noising, the three output
parameterisations (epsilon, x0, v), and the posterior q(x_s | x_t, x_0) that samplers step with.

Timesteps are integers t = 0..T-1 (t = 0 is the least noisy); `s = -1` stands for clean data.
Every method takes `t` as a (batch,) long tensor and broadcasts over the remaining dimensions,
so the same object serves pixels, field values and latent vectors alike.
"""
from __future__ import annotations

import gin
import torch

from engine.errors import ConfigError, require_int
from tasks.common.diffusion.schedules import make_betas

PARAMETERIZATIONS = ("eps", "x0", "v")


@gin.configurable
class GaussianDiffusion:
    """x_t = a_t x_0 + b_t eps with a_t = sqrt(alpha_bar_t), b_t = sqrt(1 - alpha_bar_t).

    `parameterization` says what a denoiser outputs: the noise ('eps'), the clean signal ('x0')
    or the velocity v = a_t eps - b_t x_0 ('v'); `target` and `x0_and_eps` translate.
    """

    def __init__(self, *, schedule: str = "cosine", steps: int = 1000, parameterization: str = "eps") -> None:
        if parameterization not in PARAMETERIZATIONS:
            raise ConfigError(f"GaussianDiffusion.parameterization must be one of {PARAMETERIZATIONS}, "
                              f"got {parameterization!r}")
        self.schedule = schedule
        self.parameterization = parameterization
        self.betas = make_betas(schedule, steps)
        self.alpha_bar = torch.cumprod(1 - self.betas, dim=0)
        # alpha_bar at s = -1 (clean data) is 1: one padded table makes s = t - 1 uniform at t = 0.
        self._alpha_bar_padded = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar])

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    # --- coefficients ---------------------------------------------------------------------
    def alpha_bar_at(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """alpha_bar_t (1 where t = -1) shaped (batch, 1, ..., 1) to broadcast against `like`."""
        t = torch.as_tensor(t, device=self._alpha_bar_padded.device).long()
        if t.dim() == 0:
            t = t.expand(like.shape[0])
        if bool(((t < -1) | (t >= self.num_steps)).any()):
            raise ValueError(f"timesteps must lie in [-1, {self.num_steps - 1}], got {t.min()}..{t.max()}")
        values = self._alpha_bar_padded[t + 1]
        return values.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))

    def signal_and_noise_scale(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a_t, b_t) = (sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)), broadcastable against `like`."""
        alpha_bar = self.alpha_bar_at(t, like)
        return alpha_bar.sqrt(), (1 - alpha_bar).sqrt()

    # --- forward process ------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """A draw of x_t given x_0 and the noise eps: a_t x_0 + b_t eps."""
        a, b = self.signal_and_noise_scale(t, x0)
        return a * x0 + b * noise

    def random_timesteps(self, count: int, generator: torch.Generator | None = None,
                         device: torch.device | str = "cpu") -> torch.Tensor:
        """Training timesteps, uniform over 0..T-1."""
        return torch.randint(0, self.num_steps, (count,), generator=generator, device=device)

    # --- parameterisations ----------------------------------------------------------------
    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        a, b = self.signal_and_noise_scale(t, x_t)
        return (x_t - b * eps) / a

    def predict_eps(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        a, b = self.signal_and_noise_scale(t, x_t)
        return (x_t - a * x0) / b

    def velocity(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """v = a_t eps - b_t x_0 (Salimans & Ho), the target of the 'v' parameterisation."""
        a, b = self.signal_and_noise_scale(t, x0)
        return a * eps - b * x0

    def target(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """What a denoiser under this parameterisation should output for (x_0, t, eps)."""
        if self.parameterization == "eps":
            return eps
        if self.parameterization == "x0":
            return x0
        return self.velocity(x0, t, eps)

    def x0_and_eps(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                   clip: tuple[float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_0, eps) implied by a denoiser `output`; with `clip`, x_0 is clamped into the data
        range and eps recomputed from it so the two stay consistent with x_t."""
        if self.parameterization == "eps":
            eps = output
            x0 = self.predict_x0(x_t, t, eps)
        elif self.parameterization == "x0":
            x0 = output
            eps = self.predict_eps(x_t, t, x0)
        else:
            a, b = self.signal_and_noise_scale(t, x_t)
            x0 = a * x_t - b * output
            eps = b * x_t + a * output
        if clip is not None:
            x0 = x0.clamp(*clip)
            eps = self.predict_eps(x_t, t, x0)
        return x0, eps

    # --- reverse process ------------------------------------------------------------------
    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor,
                  s: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_s | x_t, x_0) for s < t (default s = t - 1).

        With alpha_{t|s} = alpha_bar_t / alpha_bar_s: mean = sqrt(alpha_bar_s)(1 - alpha_{t|s})
        / (1 - alpha_bar_t) x_0 + sqrt(alpha_{t|s})(1 - alpha_bar_s) / (1 - alpha_bar_t) x_t,
        variance = (1 - alpha_{t|s})(1 - alpha_bar_s) / (1 - alpha_bar_t). For s = t - 1 this is
        DDPM's beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t); for s = -1 it is (x_0, 0).
        """
        t = torch.as_tensor(t).long()
        s = t - 1 if s is None else torch.as_tensor(s).long()
        alpha_bar_t = self.alpha_bar_at(t, x_t)
        alpha_bar_s = self.alpha_bar_at(s, x_t)
        alpha_ts = alpha_bar_t / alpha_bar_s
        mean = (alpha_bar_s.sqrt() * (1 - alpha_ts) * x0 + alpha_ts.sqrt() * (1 - alpha_bar_s) * x_t) / (1 - alpha_bar_t)
        variance = (1 - alpha_ts) * (1 - alpha_bar_s) / (1 - alpha_bar_t)
        return mean, variance.expand_as(mean)

    def timesteps(self, count: int | None = None) -> list[int]:
        """`count` timesteps from T - 1 down to 0, evenly spaced (all T when None): the chain a
        sampler walks; fewer steps give a respaced chain on the same alpha_bar."""
        count = self.num_steps if count is None else count
        require_int(count, "a sampler's steps", low=1, high=self.num_steps, hint=f"the diffusion's T is {self.num_steps}")
        chosen = torch.linspace(0, self.num_steps - 1, count, dtype=torch.float64).round().long().unique()
        return chosen.flip(0).tolist()
