"""A diffusion model over a fixed set of vectors (auto-decoder latents), as a task: standardise
the vectors per dimension, train a denoiser on them with the shared diffusion core, optionally
conditioned on integer labels with condition dropout, and sample with classifier-free guidance.

This is the part of GAUDI's prior that knows nothing about scenes (tasks/scenes/latent_prior.py adds
decoding and rendering), so it can be checked on toys such as a 2-D Gaussian mixture.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from engine.data import Shard, device_of, generated_batches, unwrap
from engine.errors import ConfigError, require
from engine.task import Task
from tasks.common.diffusion import DDIMSampler, GaussianDiffusion, Sampler, classifier_free_guidance, drop_condition
from tasks.common.gaussian_baseline import fitted_gaussian_draws

SPLIT = "train"


class LatentDiffusion(Task):
    """DDPM training on `latents` (N, D); with `labels` (N,) in [0, num_classes) the denoiser is
    conditional (label `num_classes` is the null class, used with `condition_dropout`)."""

    def __init__(self, *, latents: np.ndarray, labels: np.ndarray | None = None, num_classes: int = 0,
                 diffusion: GaussianDiffusion | None = None, sampler: Sampler | None = None,
                 condition_dropout: float = 0.1, guidance_scale: float = 1.0, eval_batches: int = 4) -> None:
        latents = np.asarray(latents, dtype=np.float32)
        require(latents.ndim == 2 and len(latents) >= 2, f"a latent diffusion needs (N >= 2, D) latents, got {latents.shape}")
        require(0.0 <= condition_dropout <= 1.0, f"condition_dropout must be in [0, 1], got {condition_dropout!r}")
        require((labels is None) == (num_classes == 0), "labels and num_classes go together (a conditional prior)")
        self.mean, self.std = latents.mean(0), latents.std(0) + 1e-6
        self.normalised = (latents - self.mean) / self.std
        self.labels = np.zeros(len(latents), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes
        self.diffusion = diffusion or GaussianDiffusion()
        self.sampler = sampler or DDIMSampler(clip=None)
        largest = float(np.abs(self.normalised).max())
        if self.sampler.clip is not None and (self.sampler.clip[0] > -largest or self.sampler.clip[1] < largest):
            raise ConfigError(f"the sampler clips predicted latents to {self.sampler.clip}, but standardised training "
                              f"latents reach {largest:.2f}: bind {type(self.sampler).__name__}.clip = None")
        self.condition_dropout, self.guidance_scale = condition_dropout, float(guidance_scale)
        self.eval_batches = eval_batches

    @property
    def latent_dim(self) -> int:
        return self.normalised.shape[1]

    def batches(self, split: str, shard: Shard):
        if split != SPLIT:
            raise ConfigError(f"a latent prior trains and evaluates on the training latents: use the split "
                              f"{SPLIT!r} (train.eval_splits = ['{SPLIT}']), not {split!r}")

        def make(rng: np.random.Generator, size: int, index: int) -> dict[str, np.ndarray]:
            chosen = rng.integers(0, len(self.normalised), size=size)
            return {"latent": self.normalised[chosen], "label": self.labels[chosen],
                    "t": rng.integers(0, self.diffusion.num_steps, size=size),
                    "noise": rng.standard_normal((size, self.latent_dim)).astype(np.float32)}

        return generated_batches(make, split, shard)

    def check_model(self, model: torch.nn.Module) -> None:
        """The denoiser's width and classes must match the latents' (clear errors before training)."""
        module = unwrap(model)
        dim, classes = getattr(module, "latent_dim", None), getattr(module, "num_classes", None)
        if dim is not None and dim != self.latent_dim:
            raise ConfigError(f"the denoiser works on {dim}-d latents but the latents are {self.latent_dim}-d: "
                              f"bind LatentDenoiser.latent_dim = {self.latent_dim}")
        if classes is not None and classes != self.num_classes:
            raise ConfigError(f"the denoiser has {classes} classes but the prior's condition has {self.num_classes}: "
                              f"bind LatentDenoiser.num_classes = {self.num_classes}")

    def loss(self, model, batch):
        self.check_model(model)
        t, x0, noise = batch["t"], batch["latent"], batch["noise"]
        labels = None
        if self.num_classes:
            labels = batch["label"]
            if model.training:
                labels = drop_condition(labels, self.num_classes, self.condition_dropout)
        prediction = model(self.diffusion.q_sample(x0, t, noise), t, labels)["prediction"]
        return F.mse_loss(prediction.float(), self.diffusion.target(x0, t, noise).float()), {}

    @torch.no_grad()
    def sample(self, model: torch.nn.Module, count: int, generator: torch.Generator,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """`count` latents in the original (de-standardised) space, (count, D); with `labels`, guided
        towards them with `guidance_scale`."""
        device = device_of(model)

        def denoise(x_t, t, condition=None):
            return model(x_t, t, condition)["prediction"]

        denoiser = denoise
        if self.num_classes and labels is not None:
            denoiser = classifier_free_guidance(denoise, labels.to(device), self.num_classes, self.guidance_scale)
        x_T = torch.randn(count, self.latent_dim, generator=generator).to(device)
        x0 = self.sampler(self.diffusion, denoiser, x_T, generator=generator).float().cpu()
        return x0 * torch.as_tensor(self.std) + torch.as_tensor(self.mean)

    def balanced_labels(self, count: int) -> torch.Tensor | None:
        return torch.arange(count) % self.num_classes if self.num_classes else None

    def gaussian_fit(self, count: int, seed: int = 0) -> torch.Tensor:
        """The baseline prior: draws from N(mean, covariance) of the latents, (count, D)."""
        draws = fitted_gaussian_draws(self.normalised, count, np.random.default_rng(seed))
        return torch.as_tensor((draws * self.std + self.mean).astype(np.float32))
