"""The enclosure test of a radiance field (`enclosed`), the directions it asks about
(`seen_directions`) and the free-space test of a camera walk (`clear_path`), against fields known
in closed form."""
from __future__ import annotations

import math

import torch

from models.layers.cameras import canonical_quaternion, yaw_pitch_quaternion
from tasks.scenes.metrics import ENCLOSURE_DIRECTIONS, clear_path, enclosed, seen_directions

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


def uniform_fog(density: float):
    """A field of constant density everywhere (colour unused)."""
    def field(planes, points):
        return torch.full(points.shape[:-1], density, dtype=points.dtype), torch.zeros_like(points)
    return field


def slab(lo: float, hi: float, density: float = 50.0):
    """Solid matter between x = lo and x = hi, free space elsewhere."""
    def field(planes, points):
        solid = (points[..., 0] >= lo) & (points[..., 0] <= hi)
        return solid.to(points.dtype) * density, torch.zeros_like(points)
    return field


def test_clear_path_accumulates_opacity_along_the_walk_in_closed_form():
    """In uniform fog of density s a walk of length L collects opacity 1 - exp(-s L) (the midpoint
    sum is exact for a constant); the walk is clear while that stays below the threshold."""
    walk = torch.tensor([[[0.0, 0.0, 0.0], [0.3, 0.0, 0.4], [0.3, 0.0, 0.9]]], dtype=torch.float64)  # L = 1.0
    for density in (0.1, 0.5, 0.69, 0.70, 2.0):
        expected = 1 - math.exp(-density * 1.0) < 0.5
        assert bool(clear_path(uniform_fog(density), None, walk)[0]) == expected
    assert bool(clear_path(uniform_fog(2.0), None, walk, max_opacity=0.9)[0])  # 1 - e^-2 = 0.865


def test_clear_path_fails_a_walk_through_a_wall_and_passes_one_beside_it():
    cameras = torch.tensor([[[-0.5, 0.0, 0.0], [-0.2, 0.0, 0.0], [0.1, 0.0, 0.0]],   # crosses x in [0, 0.05]
                            [[-0.5, 0.0, 0.0], [-0.3, 0.0, 0.2], [-0.1, 0.0, 0.4]]])  # stays at x < 0
    assert clear_path(slab(0.0, 0.05), None, cameras).tolist() == [False, True]
    # Standing still crosses nothing, even inside fog.
    assert clear_path(uniform_fog(5.0), None, torch.zeros(1, 4, 3)).all()
