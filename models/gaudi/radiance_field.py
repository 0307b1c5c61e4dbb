"""GAUDI's radiance field f: a point's tri-plane features (summed or concatenated over the three
planes) and Fourier features of its position go through an MLP to a density and a colour; no
view direction, as in the paper's figure. Rendering a batch of rays is sampling, querying and
compositing (models/layers/volume_rendering.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import FourierFeatures, bin_samples, composite, sample_points, triplane


class RadianceField(nn.Module):
    """(planes, points) -> density >= 0 (softplus, times `density_scale`) and RGB in (0, 1)."""

    def __init__(self, plane_channels: int, *, aggregation: str = "sum", hidden: int = 64, layers: int = 2,
                 num_frequencies: int = 4, bound: float = 1.0, density_scale: float = 10.0) -> None:
        super().__init__()
        self.aggregation, self.bound, self.density_scale = aggregation, bound, density_scale
        self.position_features = FourierFeatures(3, num_frequencies)
        widths = [triplane.aggregated_channels(plane_channels, aggregation) + self.position_features.out_dim]
        widths += [hidden] * layers
        body: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            body += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*body, nn.Linear(widths[-1], 4))

    def forward(self, planes: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """planes (B, 3, C, S, S), points (B, N, 3) -> density (B, N), colour (B, N, 3)."""
        features = triplane.aggregate(triplane.sample_planes(planes, points, self.bound), self.aggregation)
        out = self.body(torch.cat([features, self.position_features(points / self.bound)], dim=-1))
        return self.density_scale * F.softplus(out[..., 0]), torch.sigmoid(out[..., 1:])

    def render(self, planes: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor, *, near: float,
               far: float, samples: int, stratified: bool) -> dict[str, torch.Tensor]:
        """Rays (B, N, 3) of scene b through planes[b] -> rgb (B, N, 3), depth (B, N), opacity (B, N)."""
        batch, count = origins.shape[:2]
        bins = bin_samples(near, far, samples, (batch, count), stratified=stratified, device=origins.device)
        points = sample_points(origins, directions, bins.depths)  # (B, N, S, 3)
        density, colour = self(planes, points.reshape(batch, count * samples, 3))
        out = composite(density.view(batch, count, samples), colour.view(batch, count, samples, 3), bins,
                        directions.norm(dim=-1))
        return {k: out[k] for k in ("rgb", "depth", "opacity")}
