"""A small, shared Gaussian diffusion core (DPF fields here; GAUDI's latent prior later).

    from tasks.common.diffusion import GaussianDiffusion, DDPMSampler, DDIMSampler
    diffusion = GaussianDiffusion(schedule="cosine", steps=1000, parameterization="eps")
    # training: x_t = diffusion.q_sample(x0, t, eps); loss = mse(model(x_t, t), diffusion.target(x0, t, eps))
    t = diffusion.random_timesteps(batch, generator)
    # sampling: any callable (x_t, t) -> model output under the parameterisation
    x0 = DDIMSampler(steps=50, eta=0.0)(diffusion, lambda x, t: model(x, t), torch.randn(shape))
    # classifier-free guidance: train with drop_condition(...), sample with
    # classifier_free_guidance(lambda x, t, c: model(x, t, c), labels, null_label, scale=w)

Shapes: `t` is a (batch,) long tensor in 0..T-1 (-1 = clean data); everything else has the
batch first and any trailing shape. Schedules are float64 and cast to the data's dtype on use.
"""
from tasks.common.diffusion.gaussian import PARAMETERIZATIONS, GaussianDiffusion
from tasks.common.diffusion.guidance import classifier_free_guidance, drop_condition
from tasks.common.diffusion.samplers import DDIMSampler, DDPMSampler, Denoiser, Sampler
from tasks.common.diffusion.schedules import BETA_SCHEDULES, cosine_betas, linear_betas, make_betas

__all__ = ["BETA_SCHEDULES", "DDIMSampler", "DDPMSampler", "Denoiser", "GaussianDiffusion", "PARAMETERIZATIONS",
           "Sampler", "classifier_free_guidance", "cosine_betas", "drop_condition", "linear_betas", "make_betas"]
