"""Procedural box rooms and their exact analytic ray caster (numpy): the ground truth GAUDI-mini
learns from. A room is an axis-aligned box centred at the origin (floor at y = -half height)
with six coloured surfaces and 1-3 spheres or boxes resting on the floor, lit by one
directional light, so the frames carry depth cues (per-face brightness, shaded spheres).

The same geometry also answers "what solid is at point p, and of what colour": the indicator
field that a volume renderer must turn back into the ray caster's image (a test of both).
"""
from __future__ import annotations

import dataclasses

import numpy as np

# Surfaces in the order of `Room.surface_colours`: the wall at -x, at +x, floor, ceiling, -z, +z.
SURFACES = ("wall_-x", "wall_+x", "floor", "ceiling", "wall_-z", "wall_+z")
FLOOR_COLOURS = {"wood": (0.55, 0.36, 0.20), "slate": (0.30, 0.33, 0.38),
                 "moss": (0.33, 0.52, 0.25), "sand": (0.85, 0.78, 0.55)}
WALL_COLOURS = ((0.86, 0.84, 0.78), (0.62, 0.75, 0.88), (0.90, 0.70, 0.60), (0.70, 0.85, 0.70),
                (0.80, 0.72, 0.88), (0.92, 0.88, 0.55))
OBJECT_COLOURS = ((0.85, 0.15, 0.15), (0.15, 0.35, 0.90), (0.95, 0.80, 0.10), (0.10, 0.65, 0.30),
                  (0.75, 0.20, 0.75), (0.10, 0.75, 0.80), (0.95, 0.50, 0.10))
CEILING_COLOUR = (0.95, 0.95, 0.95)
SPHERE, BOX = 0, 1
LIGHT = np.array([0.35, 1.0, 0.55]) / np.linalg.norm([0.35, 1.0, 0.55])
AMBIENT, DIFFUSE = 0.55, 0.45
_NO_HIT = np.inf
HALF_WIDTHS = (0.6, 0.9)  # the default range of a room's half width and half depth


@dataclasses.dataclass
class Room:
    """One room. Objects: `kinds` (K,) SPHERE or BOX, `centres` (K, 3), `sizes` (K, 3) (a
    sphere's radius is sizes[:, 0]; a box's half-extents are the three), `colours` (K, 3)."""

    half_extents: np.ndarray
    surface_colours: np.ndarray
    kinds: np.ndarray
    centres: np.ndarray
    sizes: np.ndarray
    colours: np.ndarray
    floor_colour: int

    @property
    def object_count(self) -> int:
        return len(self.kinds)


def shade(colour: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Lambertian shading: colour * (ambient + diffuse * max(0, n . light)), per row."""
    return colour * (AMBIENT + DIFFUSE * np.clip(normal @ LIGHT, 0.0, None))[..., None]


def sample_room_shell(rng: np.random.Generator, *, floor_colours: int = len(FLOOR_COLOURS),
                      half_widths: tuple[float, float] = HALF_WIDTHS) -> Room:
    """Size and surface colours of a room, without objects (see `camera_paths.furnish`): half
    width and half depth drawn from `half_widths`, half height from 0.4-0.55."""
    low, high = half_widths
    half = np.array([rng.uniform(low, high), rng.uniform(0.4, 0.55), rng.uniform(low, high)])
    floor = int(rng.integers(floor_colours))
    walls = np.asarray(WALL_COLOURS)[rng.choice(len(WALL_COLOURS), size=4, replace=True)]
    colours = np.stack([walls[0], walls[1], list(FLOOR_COLOURS.values())[floor], CEILING_COLOUR, walls[2], walls[3]])
    empty = np.zeros((0, 3))
    return Room(half_extents=half, surface_colours=colours.astype(np.float64), kinds=np.zeros(0, dtype=np.int64),
                centres=empty, sizes=empty, colours=empty, floor_colour=floor)


# --- ray casting -------------------------------------------------------------------------------

def _interior_exit(room: Room, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where rays starting inside the room leave it: t and the surface index (SURFACES order)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = np.where(directions > 0, room.half_extents, -room.half_extents)
        t_axis = np.where(directions != 0, (bound - origins) / directions, _NO_HIT)
    axis = t_axis.argmin(axis=1)
    t = t_axis[np.arange(len(t_axis)), axis]
    positive = directions[np.arange(len(directions)), axis] > 0
    return t, 2 * axis + positive  # axis 0 -> surfaces 0/1, axis 1 -> 2/3, axis 2 -> 4/5


def _sphere_hit(origins, directions, centre, radius) -> np.ndarray:
    offset = origins - centre
    a = (directions * directions).sum(1)
    b = 2 * (offset * directions).sum(1)
    c = (offset * offset).sum(1) - radius ** 2
    disc = b * b - 4 * a * c
    root = np.sqrt(np.clip(disc, 0, None))
    near, far = (-b - root) / (2 * a), (-b + root) / (2 * a)
    t = np.where(near > 0, near, np.where(far > 0, far, _NO_HIT))
    return np.where(disc >= 0, t, _NO_HIT)


def _box_hit(origins, directions, centre, half) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / directions
        t1, t2 = (centre - half - origins) * inverse, (centre + half - origins) * inverse
    t1, t2 = np.nan_to_num(t1, nan=-_NO_HIT), np.nan_to_num(t2, nan=_NO_HIT)
    enter, leave = np.minimum(t1, t2).max(1), np.maximum(t1, t2).min(1)
    t = np.where(enter > 0, enter, leave)
    return np.where((leave >= enter) & (t > 0), t, _NO_HIT)


def _box_normal(points: np.ndarray, centre: np.ndarray, half: np.ndarray) -> np.ndarray:
    """The outward normal of the box face nearest to each point (inside or on the box)."""
    scaled = (points - centre) / half
    axis = np.abs(scaled).argmax(1)
    normal = np.zeros_like(points)
    normal[np.arange(len(points)), axis] = np.sign(scaled[np.arange(len(points)), axis])
    return normal


def _object_colours(room: Room, index: int, points: np.ndarray) -> np.ndarray:
    centre, size = room.centres[index], room.sizes[index]
    if room.kinds[index] == SPHERE:
        normal = (points - centre) / np.linalg.norm(points - centre, axis=1, keepdims=True).clip(1e-9)
    else:
        normal = _box_normal(points, centre, size)
    return shade(np.broadcast_to(room.colours[index], points.shape), normal)


def _surface_colours(room: Room, surface: np.ndarray) -> np.ndarray:
    """Shaded colours of interior surfaces; their normals point into the room."""
    axis, positive = surface // 2, surface % 2
    normal = np.zeros((len(surface), 3))
    normal[np.arange(len(surface)), axis] = np.where(positive == 1, -1.0, 1.0)
    return shade(room.surface_colours[surface], normal)


def cast_rays(room: Room, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact first hits of rays (N, 3) starting inside the room: RGB (N, 3) and t (N,) such that
    the hit is origin + t direction (the z-depth for directions with camera-frame z = -1)."""
    origins, directions = np.asarray(origins, np.float64), np.asarray(directions, np.float64)
    t, surface = _interior_exit(room, origins, directions)
    hit_object = np.full(len(t), -1)
    for k in range(room.object_count):
        hit = (_sphere_hit(origins, directions, room.centres[k], room.sizes[k, 0]) if room.kinds[k] == SPHERE
               else _box_hit(origins, directions, room.centres[k], room.sizes[k]))
        closer = hit < t
        t = np.where(closer, hit, t)
        hit_object = np.where(closer, k, hit_object)
    rgb = _surface_colours(room, surface)
    points = origins + t[:, None] * directions
    for k in range(room.object_count):
        on = hit_object == k
        if on.any():
            rgb[on] = _object_colours(room, k, points[on])
    return rgb, t


# --- the indicator field ----------------------------------------------------------------------

def _inside_object(room: Room, index: int, points: np.ndarray) -> np.ndarray:
    offset = points - room.centres[index]
    if room.kinds[index] == SPHERE:
        return (offset ** 2).sum(1) <= room.sizes[index, 0] ** 2
    return (np.abs(offset) <= room.sizes[index]).all(1)


def solid_and_colour(room: Room, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each point (N, 3) is inside solid matter (beyond a wall or inside an object) and the
    shaded colour of that matter's nearest face: the indicator version of the scene."""
    points = np.asarray(points, np.float64)
    beyond = np.abs(points) - room.half_extents
    solid = (beyond > 0).any(1)
    axis = beyond.argmax(1)
    surface = 2 * axis + (points[np.arange(len(points)), axis] > 0)
    colour = _surface_colours(room, surface)
    for k in range(room.object_count):
        inside = _inside_object(room, k, points) & ~solid
        if inside.any():
            colour[inside] = _object_colours(room, k, points[inside])
        solid |= inside
    return solid, colour
