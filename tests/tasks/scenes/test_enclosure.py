"""The enclosure test of a radiance field (`enclosed`) and the directions it asks about
(`seen_directions`), against a room whose geometry is known in closed form."""
from __future__ import annotations

import math

import torch

from models.layers.cameras import canonical_quaternion, yaw_pitch_quaternion
from tasks.scenes.metrics import ENCLOSURE_DIRECTIONS, enclosed, seen_directions

HALF = 1.0  # the room is the cube [-1, 1]^3 without a ceiling


def open_top_room(planes, origins, directions):
    """Exact opacity and depth of rays (B, N, 3) leaving a point inside the cube: every wall and
    the floor are opaque, the top face is open sky."""
    safe = torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    exits = (torch.sign(safe) * HALF - origins) / safe  # distance to the face each axis leaves through
    t, axis = exits.min(-1)
    sky = (axis == 1) & (directions[..., 1] > 0)
    return {"opacity": (~sky).float(), "depth": torch.where(sky, torch.zeros_like(t), t)}


def looking(pitch_deg: float) -> torch.Tensor:
    return canonical_quaternion(yaw_pitch_quaternion(torch.tensor([0.4]), torch.tensor([math.radians(pitch_deg)])))


def test_seen_directions_stop_at_the_top_edge_of_the_view():
    """A square 75-degree view pitched p degrees sees up to p + 37.5 degrees: the cube's directions
    at 0 and below (17), then 35.3 (+4 corners), then 45 (+4 edges)."""
    focal = 16 / math.tan(math.radians(37.5))
    intrinsics = torch.tensor([focal, 16.0, 16.0])
    for pitch, count in ((-8.0, 17), (-20.0, 17), (0.0, 21), (10.0, 25)):
        kept = seen_directions(looking(pitch), intrinsics, 32, 32)
        elevations = torch.rad2deg(torch.asin(kept[:, 1]))
        assert len(kept) == count and elevations.max() <= pitch + 37.5 + 1e-4
        assert len(kept) == int((torch.rad2deg(torch.asin(ENCLOSURE_DIRECTIONS[:, 1])) <= pitch + 37.5).sum())


def test_an_open_ceiling_fails_only_the_directions_that_look_up():
    cameras = torch.tensor([[[0.0, 0.2, 0.0], [0.3, -0.5, 0.2]]])  # two cameras well inside
    assert not enclosed(open_top_room, None, cameras).any()  # straight up sees the sky
    downward = ENCLOSURE_DIRECTIONS[ENCLOSURE_DIRECTIONS[:, 1] <= 0]
    assert enclosed(open_top_room, None, cameras, directions=downward).all()
    # A camera 5 cm from a wall stops the rays toward it at once: inside matter, not a room.
    assert not enclosed(open_top_room, None, torch.tensor([[[0.95, 0.0, 0.0]]]), directions=downward).any()
