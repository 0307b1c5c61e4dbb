"""The NeRF volume renderer against closed forms: a constant-density slab, empty space, an opaque
wall, the weights' bounds, and world-length bins for rays that are not unit length."""
from __future__ import annotations

import math

import pytest
import torch

from models.layers.volume_rendering import bin_samples, compositing_weights, composite

NEAR, FAR = 0.5, 2.5
COLOUR = torch.tensor([0.2, 0.6, 0.9])


def render_constant(sigma: float, samples: int, norm: float = 1.0) -> dict[str, torch.Tensor]:
    bins = bin_samples(NEAR, FAR, samples, (1,), stratified=False)
    density = torch.full((1, samples), sigma, dtype=torch.float64)
    colour = COLOUR.double().expand(1, samples, 3)
    return composite(density, colour, bins, torch.tensor([norm], dtype=torch.float64))


@pytest.mark.parametrize("sigma", [0.3, 1.0, 4.0])
def test_constant_density_slab_has_exact_opacity_and_colour(sigma):
    length = FAR - NEAR
    out = render_constant(sigma, samples=7)
    expected = 1 - math.exp(-sigma * length)
    assert out["opacity"].item() == pytest.approx(expected, abs=1e-6)
    assert torch.allclose(out["rgb"][0], COLOUR.double() * expected, atol=1e-6)


def test_constant_density_depth_converges_to_the_integral():
    sigma, length = 1.5, FAR - NEAR
    exact = (NEAR + 1 / sigma) * (1 - math.exp(-sigma * length)) - length * math.exp(-sigma * length)
    errors = [abs(render_constant(sigma, samples)["depth"].item() - exact) for samples in (4, 16, 64)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3
    assert errors[1] / errors[2] > 10  # midpoint quadrature: the error falls as 1/S^2


def test_empty_space_is_transparent_and_shows_the_background():
    bins = bin_samples(NEAR, FAR, 16, (3,), stratified=True, generator=torch.Generator().manual_seed(0))
    out = composite(torch.zeros(3, 16), torch.rand(3, 16, 3), bins, torch.ones(3), background=0.25)
    assert torch.all(out["opacity"] == 0) and torch.all(out["depth"] == 0)
    assert torch.allclose(out["rgb"], torch.full((3, 3), 0.25))


@pytest.mark.parametrize("samples", [32, 128, 512])
def test_an_opaque_wall_renders_its_distance_and_colour(samples):
    distance = 1.37
    bins = bin_samples(NEAR, FAR, samples, (1,), stratified=False)
    density = torch.where(bins.depths >= distance, 1e4, 0.0).double()
    colour = torch.where((bins.depths >= distance)[..., None], COLOUR, torch.tensor([1.0, 0.0, 0.0])).double()
    out = composite(density, colour, bins, torch.ones(1, dtype=torch.float64))
    spacing = (FAR - NEAR) / samples
    assert out["opacity"].item() == pytest.approx(1.0, abs=1e-9)
    assert abs(out["depth"].item() - distance) <= spacing  # the first sample behind the wall
    assert torch.allclose(out["rgb"][0], COLOUR.double(), atol=1e-9)


def test_weights_are_non_negative_and_sum_to_at_most_one():
    generator = torch.Generator().manual_seed(3)
    density = torch.rand(64, 48, generator=generator) * torch.logspace(-2, 3, 64)[:, None]
    lengths = torch.rand(64, 48, generator=generator) * 0.2
    weights = compositing_weights(density, lengths)
    assert torch.all(weights >= 0)
    assert torch.all(weights.sum(-1) <= 1 + 1e-6)


def test_bins_are_measured_in_world_length():
    # A ray twice as long per unit t crosses twice the matter per bin: like doubling the density.
    doubled_norm = render_constant(0.7, samples=8, norm=2.0)
    doubled_density = render_constant(1.4, samples=8)
    assert torch.allclose(doubled_norm["opacity"], doubled_density["opacity"])


def test_stratified_samples_stay_inside_their_bins():
    bins = bin_samples(NEAR, FAR, 10, (5,), stratified=True, generator=torch.Generator().manual_seed(1))
    edges = torch.linspace(NEAR, FAR, 11)
    assert torch.all(bins.depths >= edges[:-1]) and torch.all(bins.depths <= edges[1:])
    assert torch.allclose(bins.widths.sum(-1), torch.full((5,), FAR - NEAR))
