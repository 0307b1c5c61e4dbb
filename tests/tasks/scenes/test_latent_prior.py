"""The latent prior on a 2-D Gaussian-mixture toy: unconditional samples recover the mode weights
and moments; conditional samples with classifier-free guidance land in the asked mode."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.data import Shard
from tasks.common.diffusion import DDIMSampler, DDPMSampler, GaussianDiffusion
from models.gaudi.denoiser import LatentDenoiser
from tasks.common.latent_diffusion import LatentDiffusion
from tests.helpers import fit_task

MODES = np.array([[-2.0, 0.0], [2.0, 0.5], [0.0, 3.0]])
WEIGHTS = np.array([0.5, 0.3, 0.2])
SPREAD = 0.3


def mixture(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(MODES), size=count, p=WEIGHTS)
    return MODES[labels] + SPREAD * rng.standard_normal((count, 2)), labels


def fit(task: LatentDiffusion, model: torch.nn.Module, steps: int, lr: float = 3e-3) -> None:
    torch.manual_seed(0)
    fit_task(task, model, steps=steps, lr=lr, batch_size=256)


def nearest_mode(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, None, :] - MODES[None], axis=-1).argmin(1)


@pytest.mark.slow
def test_the_prior_recovers_a_gaussian_mixture():
    points, _ = mixture(1000)
    task = LatentDiffusion(latents=points, diffusion=GaussianDiffusion(steps=100, parameterization="v"), sampler=DDPMSampler(clip=None))
    model = LatentDenoiser(latent_dim=2, width=64, blocks=2)
    fit(task, model, steps=1200)
    samples = task.sample(model, 2000, torch.Generator().manual_seed(1)).numpy()
    modes = nearest_mode(samples)
    assert np.allclose(np.bincount(modes, minlength=3) / len(modes), WEIGHTS, atol=0.05)
    assert np.allclose(samples.mean(0), points.mean(0), atol=0.15)
    assert np.allclose(samples.std(0), points.std(0), rtol=0.1)
    for k in range(3):  # each mode sits where it should, about as wide as it should
        assert np.allclose(samples[modes == k].mean(0), MODES[k], atol=0.15)
        assert 0.5 * SPREAD < samples[modes == k].std(0).mean() < 1.6 * SPREAD


@pytest.mark.slow
def test_guided_conditional_samples_land_in_the_asked_mode():
    points, labels = mixture(1000, seed=2)
    task = LatentDiffusion(latents=points, labels=labels, num_classes=3, diffusion=GaussianDiffusion(steps=100, parameterization="v"),
                           sampler=DDIMSampler(steps=25, clip=None), guidance_scale=2.0, condition_dropout=0.2)
    model = LatentDenoiser(latent_dim=2, width=64, blocks=2, num_classes=3)
    fit(task, model, steps=800)
    asked = task.balanced_labels(300)
    samples = task.sample(model, 300, torch.Generator().manual_seed(3), asked).numpy()
    assert np.mean(nearest_mode(samples) == asked.numpy()) > 0.95


def test_mismatched_denoisers_and_clipping_samplers_fail_clearly():
    points, labels = mixture(50)
    task = LatentDiffusion(latents=points, labels=labels, num_classes=3)
    batch = next(task.batches("train", Shard(batch_size=4)))
    with pytest.raises(ConfigError, match="latent_dim = 2"):
        task.loss(LatentDenoiser(latent_dim=3, num_classes=3), batch)
    with pytest.raises(ConfigError, match="num_classes = 3"):
        task.loss(LatentDenoiser(latent_dim=2), batch)
    with pytest.raises(ConfigError, match="clip = None"):
        LatentDiffusion(latents=points, sampler=DDIMSampler())  # clips to [-1, 1]: standardised latents reach further
    with pytest.raises(ConfigError, match="split"):
        next(task.batches("eval", Shard(batch_size=4)))
