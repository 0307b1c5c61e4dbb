"""Camera geometry shared by every renderer: unit quaternions <-> rotation matrices, and pinhole
rays. One convention, defined once, so a learned renderer and an exact ray caster agree:

- a pose is (quaternion q = (w, x, y, z), translation t): the camera-to-world rotation R(q) and
  the camera centre t in world coordinates;
- the camera looks along its -z axis, x points right and y up (OpenGL / NeRF);
- pixel (u, v) (column, row; centres at +0.5) has camera-frame direction
  ((u - cx) / f, -(v - cy) / f, -1), so a ray's parameter t is the z-depth along the view axis.
"""
from __future__ import annotations

import torch


def normalize_quaternion(q: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """q / |q|, on the last axis."""
    return q / q.norm(dim=-1, keepdim=True).clamp(min=eps)


def canonical_quaternion(q: torch.Tensor) -> torch.Tensor:
    """The representative with w >= 0 (q and -q are the same rotation)."""
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """min(|a - b|, |a + b|): the Euclidean distance that ignores the sign ambiguity of q."""
    return torch.minimum((a - b).norm(dim=-1), (a + b).norm(dim=-1))


def rotation_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The angle (radians) of the rotation between unit quaternions a and b."""
    dot = (normalize_quaternion(a) * normalize_quaternion(b)).sum(-1).abs().clamp(max=1.0)
    return 2 * torch.acos(dot)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternions (w, x, y, z), normalised here, -> (..., 3, 3) rotation matrices."""
    w, x, y, z = normalize_quaternion(q).unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quaternion(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions with w >= 0.

    Each of the four candidate formulas divides by one component; picking the largest
    component (Shepperd's method) keeps the division well conditioned for every rotation.
    """
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    squares = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                           1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1)  # 4 w^2, 4 x^2, 4 y^2, 4 z^2
    candidates = torch.stack([
        torch.stack([squares[..., 0], m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                     m[..., 1, 0] - m[..., 0, 1]], dim=-1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], squares[..., 1], m[..., 1, 0] + m[..., 0, 1],
                     m[..., 0, 2] + m[..., 2, 0]], dim=-1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] + m[..., 0, 1], squares[..., 2],
                     m[..., 2, 1] + m[..., 1, 2]], dim=-1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2],
                     squares[..., 3]], dim=-1),
    ], dim=-2)  # row k = 4 * q_k * q
    best = squares.argmax(dim=-1)
    chosen = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    return canonical_quaternion(normalize_quaternion(chosen))


def yaw_pitch_quaternion(yaw: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
    """The camera rotation R_y(yaw) R_x(pitch): turn left by `yaw` about world up (+y), then tilt
    up by `pitch` (radians); no roll. yaw = pitch = 0 looks along world -z."""
    cy, sy = torch.cos(yaw / 2), torch.sin(yaw / 2)
    cp, sp = torch.cos(pitch / 2), torch.sin(pitch / 2)
    # (cy, 0, sy, 0) * (cp, sp, 0, 0), the Hamilton product.
    return torch.stack([cy * cp, cy * sp, sy * cp, -sy * sp], dim=-1)


def pixel_centres(height: int, width: int) -> torch.Tensor:
    """(height * width, 2) pixel centres (u, v) = (column + 0.5, row + 0.5), row-major."""
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                                torch.arange(width, dtype=torch.float32), indexing="ij")
    return torch.stack([cols.flatten() + 0.5, rows.flatten() + 0.5], dim=-1)


def camera_directions(pixels: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """(..., R, 2) pixels and (..., 3) intrinsics (f, cx, cy) -> (..., R, 3) camera-frame
    directions with z = -1."""
    focal, cx, cy = (intrinsics[..., k, None] for k in range(3))
    u, v = pixels.unbind(-1)
    return torch.stack([(u - cx) / focal, -(v - cy) / focal, -torch.ones_like(u)], dim=-1)


def camera_rays(quaternion: torch.Tensor, translation: torch.Tensor, pixels: torch.Tensor,
                intrinsics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space rays through `pixels` of the camera (q, t).

    quaternion (..., 4), translation (..., 3), intrinsics (..., 3), pixels (..., R, 2)
    -> origins (..., R, 3), directions (..., R, 3) (not unit: their camera-frame z is -1).
    """
    rotation = quaternion_to_matrix(quaternion)
    directions = torch.einsum("...ij,...rj->...ri", rotation, camera_directions(pixels, intrinsics))
    origins = translation[..., None, :].expand_as(directions)
    return origins, directions
