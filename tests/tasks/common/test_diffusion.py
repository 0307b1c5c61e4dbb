"""The diffusion core: schedules, the forward process, parameterisations, and samplers checked
against oracle denoisers (exact posterior means of Gaussian and two-point data, no network)."""
from __future__ import annotations

import math

import pytest
import torch

from engine.errors import ConfigError
from tasks.common.diffusion import (DDIMSampler, DDPMSampler, GaussianDiffusion, classifier_free_guidance,
                              drop_condition)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("steps", [200, 1000])
def test_schedule_is_monotone_and_ends_in_noise(schedule, steps):
    diffusion = GaussianDiffusion(schedule=schedule, steps=steps)
    assert bool((diffusion.betas > 0).all()) and bool((diffusion.betas <= 0.999).all())
    assert bool((diffusion.alpha_bar[1:] < diffusion.alpha_bar[:-1]).all())
    assert float(diffusion.alpha_bar[-1]) < 1e-3


def test_posterior_variance_matches_the_ddpm_formula():
    diffusion = GaussianDiffusion(schedule="linear", steps=100)
    betas, alpha_bar = diffusion.betas, diffusion.alpha_bar
    t = torch.arange(100)
    x = torch.zeros(100, 3, dtype=torch.float64)
    _, variance = diffusion.posterior(x, x, t)
    expected = betas[1:] * (1 - alpha_bar[:-1]) / (1 - alpha_bar[1:])
    assert torch.allclose(variance[1:, 0], expected, rtol=1e-10)
    assert float(variance[0, 0]) == 0.0  # the step to clean data adds no noise


def test_posterior_mean_is_the_mean_of_x_s_given_x_t_and_x0():
    # Monte-Carlo check of q(x_s | x_t, x_0) for a respaced pair (s, t) = (40, 70).
    diffusion = GaussianDiffusion(schedule="cosine", steps=100)
    generator = torch.Generator().manual_seed(0)
    n = 400_000
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    s, t = torch.full((n,), 40), torch.full((n,), 70)
    x_s = diffusion.q_sample(x0, s, torch.randn(n, 1, generator=generator, dtype=torch.float64))
    ratio = diffusion.alpha_bar[70] / diffusion.alpha_bar[40]
    x_t = ratio.sqrt() * x_s + (1 - ratio).sqrt() * torch.randn(n, 1, generator=generator, dtype=torch.float64)
    mean, variance = diffusion.posterior(x0, x_t, t, s)
    residual = x_s - mean
    assert abs(float(residual.mean())) < 5e-3
    assert abs(float(residual.var()) / float(variance[0]) - 1) < 0.02


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
def test_parameterisations_round_trip(parameterization):
    diffusion = GaussianDiffusion(steps=1000, parameterization=parameterization)
    generator = torch.Generator().manual_seed(1)
    x0 = torch.rand(64, 5, generator=generator) * 2 - 1
    eps = torch.randn(64, 5, generator=generator)
    t = torch.randint(0, 1000, (64,), generator=generator)
    x_t = diffusion.q_sample(x0, t, eps)
    got_x0, got_eps = diffusion.x0_and_eps(diffusion.target(x0, t, eps), x_t, t)
    keep = t < 980  # near t = T the signal scale a_t ~ 1e-3 amplifies float32 rounding in x0
    assert torch.allclose(got_x0[keep], x0[keep], atol=1e-4)
    assert torch.allclose(got_eps, eps, atol=1e-4)


def test_predict_x0_inverts_q_sample():
    diffusion = GaussianDiffusion(schedule="cosine", steps=1000)
    generator = torch.Generator().manual_seed(2)
    x0 = torch.rand(256, 3, generator=generator) * 2 - 1
    eps = torch.randn(256, 3, generator=generator)
    t = torch.randint(0, 900, (256,), generator=generator)
    assert torch.allclose(diffusion.predict_x0(diffusion.q_sample(x0, t, eps), t, eps), x0, atol=1e-5)


def test_q_sample_has_the_right_moments():
    diffusion = GaussianDiffusion(schedule="linear", steps=1000)
    generator = torch.Generator().manual_seed(3)
    n, t = 200_000, 300
    x0 = torch.full((n, 1), 0.5)
    x_t = diffusion.q_sample(x0, torch.full((n,), t), torch.randn(n, 1, generator=generator))
    alpha_bar = float(diffusion.alpha_bar[t])
    assert abs(float(x_t.mean()) - math.sqrt(alpha_bar) * 0.5) < 4 / math.sqrt(n)
    assert abs(float(x_t.var()) - (1 - alpha_bar)) < 0.01


# --- oracle denoisers --------------------------------------------------------------------------

def gaussian_oracle(diffusion: GaussianDiffusion, mu: float, sd: float):
    """E[eps | x_t] for x_0 ~ N(mu, sd^2): b (x_t - a mu) / (a^2 sd^2 + b^2)."""
    def denoise(x_t, t):
        a, b = diffusion.signal_and_noise_scale(t, x_t)
        return b * (x_t - a * mu) / (a * a * sd * sd + b * b)
    return denoise


def two_point_oracle(diffusion: GaussianDiffusion):
    """E[eps | x_t] for x_0 uniform on {-1, +1}: (x_t - a tanh(a x_t / b^2)) / b."""
    def denoise(x_t, t):
        a, b = diffusion.signal_and_noise_scale(t, x_t)
        return (x_t - a * torch.tanh(a * x_t / (b * b))) / b
    return denoise


SAMPLERS = {"ddpm": lambda: DDPMSampler(clip=None), "ddim": lambda: DDIMSampler(steps=200, eta=0.0, clip=None)}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_recover_gaussian_data_with_an_oracle_denoiser(name):
    # T = 1000: DDPM walks every step, DDIM 200 of them. The Monte-Carlo error of the sd is
    # ~0.5%; coarser chains add a discretisation bias (DDIM with 50 steps: sd ~4% low here).
    diffusion = GaussianDiffusion(schedule="cosine", steps=1000)
    mu, sd, n = 0.6, 0.3, 20_000
    generator = torch.Generator().manual_seed(4)
    x_T = torch.randn(n, 1, generator=generator, dtype=torch.float64)
    samples = SAMPLERS[name]()(diffusion, gaussian_oracle(diffusion, mu, sd), x_T, generator=generator)
    assert abs(float(samples.mean()) - mu) < 4 * sd / math.sqrt(n)
    assert abs(float(samples.std()) / sd - 1) < 0.02


@pytest.mark.parametrize("name", ["ddpm", "ddim"])
def test_samplers_recover_two_point_data_with_an_oracle_denoiser(name):
    diffusion = GaussianDiffusion(schedule="cosine", steps=200)
    n = 4000
    generator = torch.Generator().manual_seed(5)
    x_T = torch.randn(n, 1, generator=generator, dtype=torch.float64)
    sampler = DDPMSampler() if name == "ddpm" else DDIMSampler(steps=50)
    samples = sampler(diffusion, two_point_oracle(diffusion), x_T, generator=generator)
    assert float((samples.abs() - 1).abs().max()) < 0.05
    assert abs(float((samples > 0).double().mean()) - 0.5) < 4 * 0.5 / math.sqrt(n)


def test_ddim_with_eta_zero_is_deterministic_given_x_T():
    diffusion = GaussianDiffusion(steps=100)
    oracle = two_point_oracle(diffusion)
    x_T = torch.randn(32, 4, generator=torch.Generator().manual_seed(6))
    first = DDIMSampler(steps=20)(diffusion, oracle, x_T, generator=torch.Generator().manual_seed(1))
    second = DDIMSampler(steps=20)(diffusion, oracle, x_T, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first, second)
    noisy = [DDIMSampler(steps=20, eta=1.0)(diffusion, gaussian_oracle(diffusion, 0.0, 0.5), x_T,
                                            generator=torch.Generator().manual_seed(k)) for k in (1, 2)]
    assert not torch.allclose(noisy[0], noisy[1])


def test_ddim_with_eta_one_on_the_full_chain_is_ddpm():
    diffusion = GaussianDiffusion(schedule="linear", steps=100)
    oracle = gaussian_oracle(diffusion, 0.2, 0.4)
    x_T = torch.randn(16, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    ddpm = DDPMSampler(clip=None)(diffusion, oracle, x_T, generator=torch.Generator().manual_seed(8))
    ddim = DDIMSampler(steps=None, eta=1.0, clip=None)(diffusion, oracle, x_T,
                                                        generator=torch.Generator().manual_seed(8))
    assert torch.allclose(ddpm, ddim, atol=1e-9)


def test_respaced_chain_runs_from_the_last_step_to_zero():
    diffusion = GaussianDiffusion(steps=1000)
    chain = diffusion.timesteps(50)
    assert len(chain) == 50 and chain[0] == 999 and chain[-1] == 0
    assert all(a > b for a, b in zip(chain, chain[1:]))
    assert diffusion.timesteps() == list(range(999, -1, -1))


# --- classifier-free guidance --------------------------------------------------------------------

def test_classifier_free_guidance_extrapolates_from_the_unconditional_output():
    calls = []

    def denoise(x_t, t, label):
        calls.append(len(label))
        return x_t * 0 + label.double()[:, None]  # "conditional output" = the label itself

    labels, null = torch.tensor([1, 2, 3]), 0
    x, t = torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.long)
    guided = classifier_free_guidance(denoise, labels, null, scale=2.0)(x, t)
    assert torch.equal(guided, 3.0 * labels.double()[:, None].expand(3, 2))  # (1 + 2) c - 2 * 0
    assert calls == [6]  # both branches in one batch
    plain = classifier_free_guidance(denoise, labels, null, scale=0.0)(x, t)
    assert torch.equal(plain, labels.double()[:, None].expand(3, 2))


def test_guided_sampling_sharpens_toward_the_condition():
    # Two classes N(+-0.5, 0.3^2): the unconditional law is their mixture. With guidance the
    # samples of class +1 move further from the unconditional mean than the conditional ones.
    diffusion = GaussianDiffusion(schedule="cosine", steps=100)
    mixture = two_point_like_mixture(diffusion)

    def denoise(x_t, t, label):
        cond = gaussian_oracle(diffusion, 0.5, 0.3)(x_t, t)
        return torch.where(label[:, None] == 1, cond, mixture(x_t, t))

    x_T = torch.randn(4000, 1, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    labels = torch.ones(4000, dtype=torch.long)
    means = []
    for scale in (0.0, 1.0):
        guided = classifier_free_guidance(denoise, labels, 0, scale)
        means.append(float(DDIMSampler(steps=50, clip=None)(diffusion, guided, x_T).mean()))
    assert abs(means[0] - 0.5) < 0.02 and means[1] > means[0] + 0.05


def two_point_like_mixture(diffusion: GaussianDiffusion):
    """E[eps | x_t] for x_0 ~ 0.5 N(-0.5, 0.3^2) + 0.5 N(0.5, 0.3^2)."""
    def denoise(x_t, t):
        a, b = diffusion.signal_and_noise_scale(t, x_t)
        var = a * a * 0.09 + b * b
        log_w = torch.stack([-(x_t - a * m) ** 2 / (2 * var) for m in (-0.5, 0.5)])
        weights = torch.softmax(log_w, dim=0)
        eps = torch.stack([b * (x_t - a * m) / var for m in (-0.5, 0.5)])
        return (weights * eps).sum(0)
    return denoise


def test_drop_condition_replaces_the_expected_fraction():
    labels = torch.arange(1, 10001)
    dropped = drop_condition(labels, 0, 0.25, torch.Generator().manual_seed(10))
    fraction = float((dropped == 0).double().mean())
    assert abs(fraction - 0.25) < 0.02
    assert torch.equal(dropped[dropped != 0], labels[dropped != 0])
    assert torch.equal(drop_condition(labels, 0, 0.0), labels)


def test_bad_diffusion_settings_are_config_errors():
    with pytest.raises(ConfigError, match="unknown noise schedule"):
        GaussianDiffusion(schedule="quadratic")
    with pytest.raises(ConfigError, match="parameterization"):
        GaussianDiffusion(parameterization="score")
    with pytest.raises(ConfigError, match="eta"):
        DDIMSampler(eta=-1)
    with pytest.raises(ConfigError, match="steps"):
        GaussianDiffusion(steps=100).timesteps(500)
