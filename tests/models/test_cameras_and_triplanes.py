"""Camera geometry (quaternions, the pinhole ray convention) and exact tri-plane sampling."""
from __future__ import annotations

import math

import pytest
import torch

from engine.errors import ConfigError
from models.layers import triplane
from models.layers.cameras import (camera_rays, canonical_quaternion, matrix_to_quaternion, normalize_quaternion,
                                   pixel_centres, quaternion_to_matrix, rotation_angle, yaw_pitch_quaternion)


def random_quaternions(count: int, seed: int = 0) -> torch.Tensor:
    return normalize_quaternion(torch.randn(count, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))


def test_rotation_matrices_are_orthonormal_with_determinant_one():
    rotation = quaternion_to_matrix(random_quaternions(200))
    identity = torch.eye(3, dtype=torch.float64).expand(200, 3, 3)
    assert torch.allclose(rotation @ rotation.transpose(-1, -2), identity, atol=1e-12)
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(200, dtype=torch.float64), atol=1e-12)


def test_matrix_to_quaternion_round_trips():
    q = random_quaternions(500, seed=1)
    rotation = quaternion_to_matrix(q)
    back = matrix_to_quaternion(rotation)
    assert torch.allclose(back, canonical_quaternion(q), atol=1e-10)
    assert torch.all(back[:, 0] >= 0)
    assert torch.allclose(quaternion_to_matrix(back), rotation, atol=1e-12)
    # Half turns (w = 0) take the branches that do not divide by w.
    half_turns = torch.tensor([[0.0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
    assert torch.allclose(quaternion_to_matrix(matrix_to_quaternion(quaternion_to_matrix(half_turns))),
                          quaternion_to_matrix(half_turns), atol=1e-12)


def test_q_and_minus_q_are_the_same_rotation():
    q = random_quaternions(10, seed=2)
    assert torch.allclose(quaternion_to_matrix(q), quaternion_to_matrix(-q))
    assert torch.allclose(rotation_angle(q, -q), torch.zeros(10, dtype=torch.float64), atol=1e-6)


def test_yaw_then_pitch_composes_the_axis_rotations():
    yaw, pitch = torch.tensor(0.7, dtype=torch.float64), torch.tensor(-0.3, dtype=torch.float64)
    c, s = math.cos(0.7), math.sin(0.7)
    r_yaw = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
    c, s = math.cos(-0.3), math.sin(-0.3)
    r_pitch = torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)
    assert torch.allclose(quaternion_to_matrix(yaw_pitch_quaternion(yaw, pitch)), r_yaw @ r_pitch, atol=1e-12)


def test_rays_follow_the_camera_convention():
    size, focal = 5, 4.0
    intrinsics = torch.tensor([focal, size / 2, size / 2], dtype=torch.float64)
    q = random_quaternions(1, seed=4)[0]
    t = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    pixels = pixel_centres(size, size).double()
    origins, directions = camera_rays(q, t, pixels, intrinsics)
    rotation = quaternion_to_matrix(q)
    assert torch.allclose(origins, t.expand(size * size, 3))
    centre = (size // 2) * size + size // 2
    assert torch.allclose(directions[centre], -rotation[:, 2])  # the view axis is the camera's -z
    in_camera = directions @ rotation  # back to the camera frame
    assert torch.allclose(in_camera[:, 2], -torch.ones(size * size, dtype=torch.float64))  # t is the z-depth
    right, below = centre + 1, centre + size
    assert in_camera[right, 0] == pytest.approx(1 / focal) and in_camera[right, 1] == pytest.approx(0)
    assert in_camera[below, 1] == pytest.approx(-1 / focal) and in_camera[below, 0] == pytest.approx(0)


def test_triplane_sampling_at_texel_centres_returns_texel_values():
    resolution, bound = 6, 1.5
    planes = torch.randn(2, 3, 4, resolution, resolution, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(5))  # a seed where float32 ticks failed
    ticks = triplane.texel_coordinates(resolution, bound, dtype=torch.float64)
    i, j, k = 1, 4, 2  # x, y, z texel indices
    point = torch.stack([ticks[i], ticks[j], ticks[k]]).expand(2, 1, 3)
    features = triplane.sample_planes(planes, point, bound)[:, 0]  # (B, 3, C)
    # plane xy: column x, row y; yz: column y, row z; xz: column x, row z.
    expected = torch.stack([planes[:, 0, :, j, i], planes[:, 1, :, k, j], planes[:, 2, :, k, i]], dim=1)
    assert torch.allclose(features, expected, atol=1e-12)


def test_planes_linear_in_their_coordinates_are_reproduced_exactly():
    resolution, bound = 9, 1.0
    ticks = triplane.texel_coordinates(resolution, bound, dtype=torch.float64)
    rows, cols = torch.meshgrid(ticks, ticks, indexing="ij")
    # Each plane holds 2 a + 3 b + 1 in its (a = column axis, b = row axis) coordinates.
    plane = (2 * cols + 3 * rows + 1)[None, None, None].expand(1, 3, 1, resolution, resolution)
    points = (torch.rand(1, 500, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2 - 1) * bound
    features = triplane.sample_planes(plane, points, bound)[0, :, :, 0]
    x, y, z = points[0].unbind(-1)
    expected = torch.stack([2 * x + 3 * y + 1, 2 * y + 3 * z + 1, 2 * x + 3 * z + 1], dim=-1)
    assert torch.allclose(features, expected, atol=1e-12)
    per_plane = features[..., None]  # (N, 3 planes, 1 channel)
    assert torch.allclose(triplane.aggregate(per_plane, "sum")[:, 0], expected.sum(-1), atol=1e-12)
    assert torch.equal(triplane.aggregate(per_plane, "concat"), features)


def test_points_outside_the_box_read_zero_and_bad_aggregations_fail():
    planes = torch.ones(1, 3, 2, 4, 4)
    features = triplane.sample_planes(planes, torch.tensor([[[3.0, 3.0, 3.0]]]), bound=1.0)
    assert torch.all(features == 0)
    with pytest.raises(ConfigError, match="aggregation"):
        triplane.aggregated_channels(8, "mean")
