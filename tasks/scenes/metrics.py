"""Metrics of rendered scenes and camera paths: PSNR, pose errors, path smoothness, whether a
camera stands inside a closed room, for ground truth (a box test) and for any radiance field
(every direction around the camera that the training views reach must hit a surface, and the
camera must not sit in matter), and whether a path's walk crosses free space in its field.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from models.layers.cameras import camera_rays, rotation_angle
from models.layers.volume_rendering import compositing_weights

# 26 directions: the faces, edges and corners of a cube around the camera.
_GRID = torch.stack(torch.meshgrid(*[torch.tensor([-1.0, 0.0, 1.0])] * 3, indexing="ij"), -1).reshape(-1, 3)
ENCLOSURE_DIRECTIONS = torch.nn.functional.normalize(_GRID[_GRID.abs().sum(-1) > 0], dim=-1)


def psnr(mse: torch.Tensor | float) -> torch.Tensor:
    """Peak signal-to-noise ratio (dB) of images in [0, 1] from their mean squared error."""
    return -10 * torch.log10(torch.as_tensor(mse).clamp(min=1e-10))


def pose_errors(quaternions: torch.Tensor, translations: torch.Tensor, true_quaternions: torch.Tensor,
                true_translations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame rotation error (degrees) and translation error (world units)."""
    angle = torch.rad2deg(rotation_angle(quaternions, true_quaternions))
    return angle, (translations - true_translations).norm(dim=-1)


def path_steps(quaternions: torch.Tensor, translations: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per trajectory (B, F, ...): mean step length and mean turn between frames, and the mean
    second differences of position and of heading, which vanish for a constant-speed straight
    walk with a steady turn (the smoothness of a path, in world units and degrees)."""
    steps = translations[:, 1:] - translations[:, :-1]
    turns = torch.rad2deg(rotation_angle(quaternions[:, 1:], quaternions[:, :-1]))
    return {"step": steps.norm(dim=-1).mean(1), "turn": turns.mean(1),
            "position_jerk": (steps[:, 1:] - steps[:, :-1]).norm(dim=-1).mean(1),
            "turn_jerk": (turns[:, 1:] - turns[:, :-1]).abs().mean(1)}


def inside_box(positions: torch.Tensor, half_extents: torch.Tensor) -> torch.Tensor:
    """(B, F, 3) camera positions and (B, 3) room interiors -> (B, F) whether each camera is inside."""
    return (positions.abs() < half_extents[:, None, :]).all(-1)


# (planes (B, ...), origins (B, N, 3), unit directions (B, N, 3)) -> {'opacity': (B, N), 'depth': ...}
RenderRays = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def seen_directions(quaternions: torch.Tensor, intrinsics: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The ENCLOSURE_DIRECTIONS no higher than the highest ray of any given camera (quaternions
    (..., 4), intrinsics broadcast to (..., 3)): a field learned from these views says nothing about space
    above them (with cameras that look down, the ceiling straight overhead), so an enclosure
    test of a learned field asks only about what the views constrain."""
    # Without roll the highest ray of a frame leaves from the middle or a corner of its top edge.
    edge = torch.tensor([[0.0, 0.0], [width / 2, 0.0], [float(width), 0.0]])
    intrinsics = torch.broadcast_to(intrinsics, (*quaternions.shape[:-1], 3)).reshape(-1, 3).float()
    quaternions = quaternions.reshape(-1, 4).float()
    _, rays = camera_rays(quaternions, torch.zeros(len(quaternions), 3), edge.expand(len(quaternions), -1, -1),
                          intrinsics)
    highest = torch.nn.functional.normalize(rays, dim=-1)[..., 1].max()
    return ENCLOSURE_DIRECTIONS[ENCLOSURE_DIRECTIONS[:, 1] <= highest + 1e-6]


@torch.no_grad()
def enclosed(render_rays: RenderRays, planes: torch.Tensor, positions: torch.Tensor, *, min_opacity: float = 0.9,
             free_radius: float = 0.1, directions: torch.Tensor = ENCLOSURE_DIRECTIONS) -> torch.Tensor:
    """(B, F) whether each camera position (B, F, 3) of scene b stands inside a closed room of the
    field `planes[b]`: rays in every one of `directions` (unit, (K, 3)) become opaque
    (>= `min_opacity`), none of them closer than `free_radius` (a camera inside a wall or an object
    stops every ray at once)."""
    batch, frames = positions.shape[:2]
    directions = directions.to(positions)
    count = len(directions)
    origins = positions[:, :, None, :].expand(batch, frames, count, 3).reshape(batch, frames * count, 3)
    rays = directions.expand(batch, frames, count, 3).reshape(batch, frames * count, 3)
    out = render_rays(planes, origins, rays)
    distance = out["depth"] / out["opacity"].clamp(min=1e-6)  # where the ray's light came from, on average
    ok = (out["opacity"] >= min_opacity) & (distance >= free_radius)
    return ok.view(batch, frames, count).all(-1)


# (planes (B, ...), points (B, N, 3)) -> (density (B, N), colour (B, N, 3))
Field = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def clear_path(field: Field, planes: torch.Tensor, positions: torch.Tensor, *, max_opacity: float = 0.5,
               samples_per_step: int = 16) -> torch.Tensor:
    """(B,) whether the walk of scene b's cameras (B, F, 3), straight from each to the next, crosses
    free space in the field `planes[b]`: the opacity the walk collects, composited like a ray through
    the midpoints of `samples_per_step` pieces per step, stays below `max_opacity`. Real walks keep
    clear of walls and objects, so a scene whose path runs through matter pairs a path with a room it
    does not fit."""
    batch, frames = positions.shape[:2]
    pieces = torch.arange(samples_per_step, dtype=positions.dtype, device=positions.device)
    fractions = (pieces + 0.5) / samples_per_step
    start, step = positions[:, :-1, None, :], (positions[:, 1:] - positions[:, :-1])[:, :, None, :]
    points = (start + fractions[:, None] * step).reshape(batch, -1, 3)
    lengths = step.norm(dim=-1).expand(batch, frames - 1, samples_per_step).reshape(batch, -1) / samples_per_step
    density, _ = field(planes, points)
    return compositing_weights(density, lengths).sum(-1) < max_opacity


def fraction(values: torch.Tensor | np.ndarray) -> float:
    return float(torch.as_tensor(values).float().mean())
