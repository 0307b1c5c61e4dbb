"""Tri-plane features (EG3D): three axis-aligned 2D feature maps stand for a 3D feature volume;
a point reads each plane at its projection (bilinearly) and the three reads are summed or
concatenated. Memory grows as S^2 rather than S^3, which is what lets a decoder emit a scene.

Planes are ordered xy, yz, xz; a plane's columns follow its first axis and its rows the
second. Texels sit at the corners of the bounded box [-bound, bound]^2 and every S - 1 steps
between (`align_corners=True`), so a field linear in the coordinates is reproduced exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.errors import ConfigError

PLANE_AXES = ((0, 1), (1, 2), (0, 2))  # xy, yz, xz
AGGREGATIONS = ("sum", "concat")


def texel_coordinates(resolution: int, bound: float = 1.0, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The coordinate of texel k along one plane axis: -bound + 2 bound k / (S - 1) (in `dtype`: a
    float32 coordinate cast up is off the texel centre by its rounding)."""
    return torch.linspace(-bound, bound, resolution, dtype=dtype)


def sample_planes(planes: torch.Tensor, points: torch.Tensor, bound: float = 1.0) -> torch.Tensor:
    """planes (B, 3, C, S, S), points (B, N, 3) -> features (B, N, 3, C).

    Points outside the box read zeros (the planes describe nothing there).
    """
    batch, count = points.shape[:2]
    if planes.dim() != 5 or planes.shape[1] != 3:
        raise ValueError(f"planes must be (batch, 3, channels, S, S), got {tuple(planes.shape)}")
    coords = torch.stack([points[..., list(axes)] for axes in PLANE_AXES], dim=1) / bound  # (B, 3, N, 2)
    flat_planes = planes.flatten(0, 1)  # (B*3, C, S, S)
    grid = coords.flatten(0, 1)[:, :, None, :].to(flat_planes.dtype)  # (B*3, N, 1, 2): (x -> columns, y -> rows)
    read = F.grid_sample(flat_planes, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return read[..., 0].view(batch, 3, -1, count).permute(0, 3, 1, 2)  # (B, N, 3, C)


def aggregate(features: torch.Tensor, how: str) -> torch.Tensor:
    """(..., 3, C) per-plane features -> (..., C) summed or (..., 3C) concatenated."""
    if how == "sum":
        return features.sum(-2)
    if how == "concat":
        return features.flatten(-2)
    raise ConfigError(f"tri-plane aggregation must be one of {AGGREGATIONS}, got {how!r}")


def aggregated_channels(channels: int, how: str) -> int:
    """The width `aggregate` returns for planes of `channels` channels."""
    if how not in AGGREGATIONS:
        raise ConfigError(f"tri-plane aggregation must be one of {AGGREGATIONS}, got {how!r}")
    return channels if how == "sum" else 3 * channels
