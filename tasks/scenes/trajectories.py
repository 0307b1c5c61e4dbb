"""Scene trajectories for GAUDI: per trajectory, F frames of RGB and depth with 6-DoF camera poses
and times s in [-1, 1], plus optional category labels for conditioning.

`ProceduralRooms` renders box rooms with the exact ray caster of tasks/scenes/rooms.py along the paths
of tasks/scenes/camera_paths.py and caches the arrays on disk (rendering is the slow part); each room is
a pure function of (seed, index), so a larger set starts with the rooms of a smaller one.
`tasks/scenes/files.py` reads the same arrays from a directory of real trajectories.
"""
from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import math
import os
import time

import gin
import numpy as np
import torch

from engine.errors import ConfigError, require, require_int
from engine.files import atomic_path
from models.layers.cameras import camera_rays, pixel_centres
from tasks.common.cache import Progress, announce_cache, cache_root
from tasks.scenes.camera_paths import CENTRAL_REACH, WALL_MARGIN, CameraPath, furnish, sample_path
from tasks.scenes.rooms import FLOOR_COLOURS, HALF_WIDTHS, Room, cast_rays, sample_room_shell

CACHE_VERSION = 1  # bump when generation changes, so stale caches are not read
DEFAULT_LAYOUT = (HALF_WIDTHS, False)  # ProceduralRooms' (half_widths, roam): caches from before them stay valid


@dataclasses.dataclass
class SceneTrajectories:
    """N trajectories of F frames at H x W.

    rgb (N, F, H, W, 3) in [0, 1]; depth (N, F, H, W): z-depth along the camera's view axis;
    quaternions (N, F, 4) camera-to-world (w, x, y, z) with w >= 0; translations (N, F, 3)
    camera centres; times (N, F) in [-1, 1]; intrinsics (N, 3) = (focal, cx, cy) in pixels;
    labels: name -> (N,) integers in [0, num_classes[name]); half_extents (N, 3): the room's
    interior box |x_i| <= h_i where known (procedural rooms), else None.
    """

    rgb: np.ndarray
    depth: np.ndarray
    quaternions: np.ndarray
    translations: np.ndarray
    times: np.ndarray
    intrinsics: np.ndarray
    labels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    num_classes: dict[str, int] = dataclasses.field(default_factory=dict)
    half_extents: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rgb)

    @property
    def frames(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[2]

    @property
    def width(self) -> int:
        return self.rgb.shape[3]

    def label(self, name: str) -> np.ndarray:
        require(name in self.labels, f"these scenes have no {name!r} labels; they have {sorted(self.labels)}")
        return self.labels[name]

    def validate(self) -> "SceneTrajectories":
        n, f, h, w = self.depth.shape
        shapes = {"rgb": (n, f, h, w, 3), "quaternions": (n, f, 4), "translations": (n, f, 3), "times": (n, f),
                  "intrinsics": (n, 3)}
        for name, shape in shapes.items():
            require(getattr(self, name).shape == shape, f"scene array {name} has shape "
                    f"{getattr(self, name).shape}, expected {shape}")
        norms = np.linalg.norm(self.quaternions, axis=-1)
        require(np.allclose(norms, 1, atol=1e-4), "camera quaternions must have unit norm")
        require(np.all(np.abs(self.times) <= 1 + 1e-6), "trajectory times must lie in [-1, 1]")
        for name, values in self.labels.items():
            require(values.shape == (n,) and values.min() >= 0 and values.max() < self.num_classes[name],
                    f"labels {name!r} must be (N,) integers in [0, {self.num_classes.get(name)})")
        return self


class SceneSource(abc.ABC):
    """Where scene trajectories come from; `load()` returns them (built once, then kept)."""

    @abc.abstractmethod
    def load(self) -> SceneTrajectories:
        """The trajectories, validated."""


def render_path(room: Room, path: CameraPath, resolution: int, intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB (F, H, W, 3) and depth (F, H, W) of `room` seen along `path` by the exact ray caster."""
    pixels = pixel_centres(resolution, resolution)
    origins, directions = camera_rays(torch.as_tensor(path.quaternions, dtype=torch.float64),
                                      torch.as_tensor(path.positions, dtype=torch.float64),
                                      pixels.double().expand(len(path.times), -1, -1),
                                      torch.as_tensor(intrinsics, dtype=torch.float64).expand(len(path.times), 3))
    rgb, depth = cast_rays(room, origins.reshape(-1, 3).numpy(), directions.reshape(-1, 3).numpy())
    frames = len(path.times)
    return rgb.reshape(frames, resolution, resolution, 3), depth.reshape(frames, resolution, resolution)


@gin.configurable
class ProceduralRooms(SceneSource):
    """`count` rooms, one trajectory of `frames` frames each, rendered at `resolution`^2 with a
    horizontal field of view of `field_of_view` degrees; labels 'floor' (floor colour) and
    'objects' (object count - 1). `half_widths`: the range of each room's half width and half
    depth; `roam`: camera paths anywhere in the room rather than near its centre (see
    `camera_paths.sample_path`), so with rooms of varied sizes where a camera may stand depends on
    the room."""

    def __init__(self, *, count: int = 160, frames: int = 8, resolution: int = 32, field_of_view: float = 75.0,
                 max_objects: int = 3, seed: int = 0, half_widths: tuple[float, float] = HALF_WIDTHS,
                 roam: bool = False, cache_dir: str | None = None) -> None:
        for name, value, low in (("count", count, 2), ("frames", frames, 2), ("resolution", resolution, 4),
                                 ("max_objects", max_objects, 1), ("seed", seed, 0)):
            require_int(value, f"ProceduralRooms.{name}", low=low)
        require(10 <= field_of_view <= 150, f"ProceduralRooms.field_of_view must be in [10, 150] degrees, "
                f"got {field_of_view!r}")
        pair = tuple(half_widths) if isinstance(half_widths, (tuple, list)) else ()
        require(len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair) and 0.3 <= pair[0] <= pair[1] <= 1.0,
                "ProceduralRooms.half_widths must be (low, high) with 0.3 <= low <= high <= 1.0 (rooms stay "
                f"inside the tri-plane's unit box), got {half_widths!r}")
        require(isinstance(roam, bool), f"ProceduralRooms.roam must be True or False, got {roam!r}")
        require(roam or pair[0] >= CENTRAL_REACH + WALL_MARGIN, "ProceduralRooms.half_widths below "
                f"{CENTRAL_REACH + WALL_MARGIN:.3f} need roam = True: paths near the centre would reach the walls")
        self.half_widths, self.roam = (float(pair[0]), float(pair[1])), roam
        self.count, self.frames, self.resolution = count, frames, resolution
        self.field_of_view, self.max_objects, self.seed = float(field_of_view), max_objects, seed
        self.cache_dir = cache_dir
        self._scenes: SceneTrajectories | None = None

    @property
    def intrinsics(self) -> np.ndarray:
        focal = self.resolution / 2 / math.tan(math.radians(self.field_of_view) / 2)
        return np.array([focal, self.resolution / 2, self.resolution / 2])

    def room(self, index: int) -> tuple[Room, CameraPath]:
        """Room `index` and its camera path: a pure function of (seed, index)."""
        rng = np.random.default_rng([self.seed, index, CACHE_VERSION])
        shell = sample_room_shell(rng, half_widths=self.half_widths)
        for _ in range(100):  # a path that leaves no room for one object is drawn again (small rooms)
            path = sample_path(rng, shell, self.frames, roam=self.roam)
            room = furnish(rng, shell, path, int(rng.integers(1, self.max_objects + 1)))
            if room.object_count:
                return room, path
        raise ConfigError(f"ProceduralRooms: room {index} ({shell.half_extents.round(2).tolist()}) has no place for an "
                          "object off its camera path in 100 tries; widen ProceduralRooms.half_widths")

    def cache_path(self) -> str:
        layout = [] if (self.half_widths, self.roam) == DEFAULT_LAYOUT else [list(self.half_widths), self.roam]
        spec = json.dumps([CACHE_VERSION, self.count, self.frames, self.resolution, self.field_of_view,
                           self.max_objects, self.seed] + layout)
        digest = hashlib.sha1(spec.encode()).hexdigest()[:12]
        return os.path.join(cache_root(self.cache_dir), f"rooms-{digest}.npz")

    def render(self) -> SceneTrajectories:
        rooms = [self.room(i) for i in range(self.count)]
        rendered = []
        what = f"ProceduralRooms: rendering {self.frames} frames of {self.resolution}x{self.resolution} per room"
        with Progress(what, self.count, unit="rooms") as progress:
            for room, path in rooms:
                rendered.append(render_path(room, path, self.resolution, self.intrinsics))
                progress.update()
        return SceneTrajectories(
            rgb=np.stack([r for r, _ in rendered]).astype(np.float32),
            depth=np.stack([d for _, d in rendered]).astype(np.float32),
            quaternions=np.stack([p.quaternions for _, p in rooms]).astype(np.float32),
            translations=np.stack([p.positions for _, p in rooms]).astype(np.float32),
            times=np.stack([p.times for _, p in rooms]).astype(np.float32),
            intrinsics=np.tile(self.intrinsics, (self.count, 1)).astype(np.float32),
            labels={"floor": np.array([r.floor_colour for r, _ in rooms]),
                    "objects": np.array([r.object_count - 1 for r, _ in rooms])},
            num_classes={"floor": len(FLOOR_COLOURS), "objects": self.max_objects},
            half_extents=np.stack([r.half_extents for r, _ in rooms]).astype(np.float32))

    def load(self) -> SceneTrajectories:
        if self._scenes is None:
            path = self.cache_path()
            if os.path.isfile(path):
                self._scenes = _read_cache(path)
            else:
                started = time.monotonic()
                self._scenes = self.render()
                _write_cache(path, self._scenes)
                announce_cache(path, started, "ProceduralRooms")
        return self._scenes


def _write_cache(path: str, scenes: SceneTrajectories) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = {f.name: getattr(scenes, f.name) for f in dataclasses.fields(scenes)
              if isinstance(getattr(scenes, f.name), np.ndarray)}
    arrays.update({f"label_{k}": v for k, v in scenes.labels.items()})
    arrays["num_classes"] = np.array(json.dumps(scenes.num_classes))
    with atomic_path(path, suffix=".npz") as tmp:  # several processes may render the same set at once
        np.savez(tmp, **arrays)


def _read_cache(path: str) -> SceneTrajectories:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    num_classes = json.loads(str(arrays.pop("num_classes")))
    labels = {k[len("label_"):]: arrays.pop(k) for k in list(arrays) if k.startswith("label_")}
    try:
        return SceneTrajectories(labels=labels, num_classes=num_classes, **arrays).validate()
    except (TypeError, ConfigError) as error:
        raise ConfigError(f"the scene cache {path} is unreadable ({error}); delete it to render again") from error
