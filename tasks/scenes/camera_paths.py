"""Smooth camera trajectories inside a room, and furniture placed where those cameras can see it
but never walk through it.

A trajectory is F poses at times s in [-1, 1]: the camera walks a straight segment near the
room's centre at eye height while its yaw sweeps linearly and its pitch looks slightly down,
so consecutive frames overlap and the floor, walls and objects are all in view.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from models.layers.cameras import canonical_quaternion, yaw_pitch_quaternion
from tasks.scenes.rooms import OBJECT_COLOURS, SPHERE, Room

CLEARANCE = 0.12  # the nearest an object's surface comes to the camera path
WALL_MARGIN = 0.15  # the nearest a camera comes to a wall (a central path's rooms must allow it too)
CENTRE_SPREAD = 0.2  # a central walk's middle lies within this of the room's centre, per axis
WALK_LENGTHS = (0.15, 0.45)
CENTRAL_REACH = CENTRE_SPREAD + WALK_LENGTHS[1] / 2  # the farthest a central path goes from the centre, per axis


@dataclasses.dataclass
class CameraPath:
    """times (F,), quaternions (F, 4) with w >= 0 (camera-to-world), positions (F, 3)."""

    times: np.ndarray
    quaternions: np.ndarray
    positions: np.ndarray


def frame_times(frames: int) -> np.ndarray:
    """F times evenly spaced over [-1, 1] (s = 0 is the middle of the trajectory)."""
    return np.linspace(-1.0, 1.0, frames)


def sample_path(rng: np.random.Generator, room: Room, frames: int, *, roam: bool = False) -> CameraPath:
    """A straight walk of length 0.15-0.45 centred within 0.2 of the room's centre, yaw sweeping
    up to +-35 degrees either way around a random heading, pitch -8 to -20 degrees.

    `roam`: the walk may lie anywhere that keeps every camera WALL_MARGIN from the walls (shortened
    where the room is too small for it), so where a camera may stand depends on the room's size:
    a pairing of one room's path with another room's walls can leave the room."""
    hx, hy, hz = room.half_extents
    times = frame_times(frames)
    centre = np.array([rng.uniform(-CENTRE_SPREAD, CENTRE_SPREAD), -hy + rng.uniform(0.75, 1.0) * hy,
                       rng.uniform(-CENTRE_SPREAD, CENTRE_SPREAD)])
    heading = rng.uniform(-np.pi, np.pi)
    walk = np.array([np.cos(heading), 0.0, np.sin(heading)]) * rng.uniform(*WALK_LENGTHS) / 2
    if roam:
        room_left = np.array([hx, hz]) - WALL_MARGIN  # how far from the centre a camera may stand, per axis
        walk *= min(1.0, *(room_left / np.maximum(np.abs(walk[[0, 2]]), 1e-12)))
        centre[[0, 2]] *= (room_left - np.abs(walk[[0, 2]])) / CENTRE_SPREAD  # the same draw, spread over the room
    positions = centre + times[:, None] * walk
    yaw = rng.uniform(-np.pi, np.pi) + rng.uniform(-0.6, 0.6) * times
    pitch = np.full(frames, -rng.uniform(0.14, 0.35))
    quaternions = canonical_quaternion(yaw_pitch_quaternion(torch.as_tensor(yaw), torch.as_tensor(pitch))).numpy()
    return CameraPath(times=times, quaternions=quaternions, positions=positions)


def _distance_to_segment(points: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Horizontal (x, z) distance from points (N, 3) to the segment start-end."""
    p, a, b = points[:, [0, 2]], start[[0, 2]], end[[0, 2]]
    span = b - a
    along = np.clip(((p - a) @ span) / max(span @ span, 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + along[:, None] * span), axis=1)


def furnish(rng: np.random.Generator, room: Room, path: CameraPath, count: int, *, attempts: int = 200) -> Room:
    """`room` with `count` spheres or boxes on its floor, inside its walls, apart from each other
    and at least CLEARANCE from the camera path; each is placed in front of the middle camera
    when it can be (so frames show it), else anywhere that fits."""
    hx, hy, hz = room.half_extents
    middle = path.positions[len(path.positions) // 2]
    w, x, y, z = path.quaternions[len(path.quaternions) // 2]
    # The middle camera's heading in the floor plane: its -z axis, R(q) (0, 0, -1).
    forward = np.array([-(2 * (x * z + w * y)), 0.0, -(1 - 2 * (x * x + y * y))])
    heading = np.arctan2(forward[2], forward[0])
    kinds, centres, sizes, colours = [], [], [], []
    for k in range(count):
        kind = int(rng.integers(2))
        size = (np.full(3, rng.uniform(0.1, 0.2)) if kind == SPHERE
                else np.array([rng.uniform(0.08, 0.2), rng.uniform(0.08, 0.25), rng.uniform(0.08, 0.2)]))
        reach = size[0] if kind == SPHERE else np.hypot(size[0], size[2])
        placed = None
        for attempt in range(attempts):
            if attempt < 3 * attempts // 4:
                angle = heading + rng.uniform(-0.6, 0.6)
                centre_xz = middle[[0, 2]] + rng.uniform(0.3, 0.85) * np.array([np.cos(angle), np.sin(angle)])
            else:
                centre_xz = rng.uniform(-1, 1, size=2) * [hx, hz]
            centre = np.array([centre_xz[0], -hy + (size[0] if kind == SPHERE else size[1]), centre_xz[1]])
            inside = abs(centre[0]) + size[0] <= hx - 0.02 and abs(centre[2]) + size[2] <= hz - 0.02
            clear = _distance_to_segment(centre[None], path.positions[0], path.positions[-1])[0] >= reach + CLEARANCE
            apart = all(np.linalg.norm((centre - c)[[0, 2]]) >= reach + np.hypot(s[0], s[2]) + 0.02
                        for c, s in zip(centres, sizes))
            if inside and clear and apart:
                placed = centre
                break
        if placed is None:
            continue  # the room is too crowded for one more: fewer objects, honestly counted
        kinds.append(kind)
        centres.append(placed)
        sizes.append(size)
        colours.append(OBJECT_COLOURS[int(rng.integers(len(OBJECT_COLOURS)))])
    return dataclasses.replace(room, kinds=np.array(kinds, dtype=np.int64), centres=np.array(centres).reshape(-1, 3),
                               sizes=np.array(sizes).reshape(-1, 3), colours=np.array(colours).reshape(-1, 3))
