"""NeRF volume rendering by piecewise-constant quadrature over bins of the ray.

[near, far] is cut into S equal bins; each bin is represented by one sample (its midpoint, or
a uniform draw inside it when stratified) whose density and colour are taken as constant over
the bin. So alpha_i = 1 - exp(-sigma_i * delta_i) with delta_i the bin's world length, the
weights w_i = alpha_i prod_{j<i} (1 - alpha_j) are exact for piecewise-constant fields (a
constant density renders opacity 1 - exp(-sigma L) exactly), and no 1e10 last interval is needed.
"""
from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class RaySamples:
    """Sample parameters t (..., S) along rays and the bin lengths dt (..., S) they stand for."""

    depths: torch.Tensor
    widths: torch.Tensor


def bin_samples(near: float, far: float, count: int, shape: tuple[int, ...], *, stratified: bool,
                device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> RaySamples:
    """`count` samples per ray for rays of batch `shape`: bin midpoints, or one uniform draw per
    bin when `stratified` (training: every depth gets sampled over the steps)."""
    if not 0 <= near < far:
        raise ValueError(f"ray bounds must satisfy 0 <= near < far, got near={near}, far={far}")
    edges = torch.linspace(near, far, count + 1, device=device)
    lower, width = edges[:-1], edges[1:] - edges[:-1]
    if stratified:
        offsets = torch.rand(*shape, count, device=device, generator=generator)
    else:
        offsets = torch.full((*shape, count), 0.5, device=device)
    depths = lower + offsets * width
    return RaySamples(depths=depths, widths=width.expand_as(depths))


def sample_points(origins: torch.Tensor, directions: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """(..., 3) origins and directions, (..., S) depths -> (..., S, 3) points o + t d."""
    return origins[..., None, :] + depths[..., :, None] * directions[..., None, :]


def compositing_weights(density: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """w_i = alpha_i T_i with alpha_i = 1 - exp(-sigma_i l_i) and T_i = exp(-sum_{j<i} sigma_j l_j).

    Transmittance comes from a cumulative sum of optical depths (not a product of 1 - alpha),
    which stays accurate and differentiable when some alpha is exactly 1.
    """
    optical = density * lengths
    alpha = 1 - torch.exp(-optical)
    before = torch.cumsum(optical, dim=-1) - optical
    return alpha * torch.exp(-before)


def composite(density: torch.Tensor, colour: torch.Tensor, samples: RaySamples, direction_norm: torch.Tensor,
              background: torch.Tensor | float | None = None) -> dict[str, torch.Tensor]:
    """Render rays from per-sample density (..., S) >= 0 and colour (..., S, C).

    `direction_norm` (...) converts bin lengths in t to world lengths (rays need not be unit).
    Returns rgb (..., C), depth (...) = sum_i w_i t_i (not divided by the opacity: transparent
    rays read as near 0), opacity (...) = sum_i w_i and the weights (..., S). Light that passes
    through every bin picks up `background` (default: nothing).
    """
    weights = compositing_weights(density, samples.widths * direction_norm[..., None])
    opacity = weights.sum(-1)
    rgb = (weights[..., None] * colour).sum(-2)
    if background is not None:
        rgb = rgb + (1 - opacity)[..., None] * torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
    return {"rgb": rgb, "depth": (weights * samples.depths).sum(-1), "opacity": opacity, "weights": weights}
