"""Real scene trajectories from a directory, in a layout any capture pipeline can write:

    <root>/<trajectory>/          one folder per trajectory, read in sorted name order
        rgb_000.png, rgb_001.png  F frames, 8-bit RGB, all H x W (frame k goes with pose k)
        depth.npy                 float32 (F, H, W): z-depth along the camera's view axis (-z)
        cameras.json              {"intrinsics": [focal, cx, cy],                 (pixels)
                                   "frames": [{"time": s, "quaternion": [w, x, y, z],
                                               "translation": [x, y, z]}, ...],
                                   "labels": {"name": integer, ...}}            (optional)

Quaternions rotate camera to world, translations are camera centres (models/layers/cameras.py);
times lie in [-1, 1] (evenly spaced when omitted). `write_trajectory_directory` writes it.
"""
from __future__ import annotations

import json
import os

import gin
import numpy as np

from engine.errors import ConfigError, require
from tasks.scenes.camera_paths import frame_times
from tasks.scenes.trajectories import SceneSource, SceneTrajectories

CAMERAS_FILE, DEPTH_FILE = "cameras.json", "depth.npy"


def _frame_name(k: int) -> str:
    return f"rgb_{k:03d}.png"


def _read_trajectory(folder: str) -> dict:
    from PIL import Image
    where = os.path.basename(folder)
    try:
        with open(os.path.join(folder, CAMERAS_FILE)) as handle:
            cameras = json.load(handle)
        frames = cameras["frames"]
        depth = np.load(os.path.join(folder, DEPTH_FILE)).astype(np.float32)
        rgb = np.stack([np.asarray(Image.open(os.path.join(folder, _frame_name(k))).convert("RGB"))
                        for k in range(len(frames))]).astype(np.float32) / 255.0
        quaternions = np.array([f["quaternion"] for f in frames], dtype=np.float64)
        translations = np.array([f["translation"] for f in frames], dtype=np.float32)
        intrinsics = np.array(cameras["intrinsics"], dtype=np.float32)
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise ConfigError(f"trajectory {where!r} does not follow the layout of tasks/scenes/files.py: {error}") from error
    times = (np.array([f["time"] for f in frames], dtype=np.float32) if all("time" in f for f in frames)
             else frame_times(len(frames)).astype(np.float32))
    require(depth.shape == rgb.shape[:3], f"trajectory {where!r}: depth has shape {depth.shape}, the frames "
            f"{rgb.shape[:3]}")
    require(intrinsics.shape == (3,), f"trajectory {where!r}: intrinsics must be [focal, cx, cy]")
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    quaternions *= np.where(quaternions[:, :1] < 0, -1.0, 1.0)  # the w >= 0 representative
    return {"rgb": rgb, "depth": depth, "quaternions": quaternions.astype(np.float32),
            "translations": translations, "times": times, "intrinsics": intrinsics,
            "labels": {k: int(v) for k, v in cameras.get("labels", {}).items()}}


@gin.configurable
class TrajectoryDirectory(SceneSource):
    """Every trajectory folder under `path` (layout in the module docstring). Label classes are
    counted from the data unless `num_classes` ({name: count}) is given."""

    def __init__(self, *, path: str = gin.REQUIRED, num_classes: dict[str, int] | None = None) -> None:
        self.path = os.path.expanduser(path)
        self.num_classes = dict(num_classes or {})
        self._scenes: SceneTrajectories | None = None

    def load(self) -> SceneTrajectories:
        if self._scenes is not None:
            return self._scenes
        require(os.path.isdir(self.path), f"TrajectoryDirectory.path {self.path!r} is not a directory")
        folders = sorted(e.path for e in os.scandir(self.path) if e.is_dir())
        require(len(folders) >= 1, f"TrajectoryDirectory.path {self.path!r} holds no trajectory folders")
        items = [_read_trajectory(folder) for folder in folders]
        shape = items[0]["rgb"].shape
        for folder, item in zip(folders, items):
            require(item["rgb"].shape == shape, f"trajectory {os.path.basename(folder)!r} has frames "
                    f"{item['rgb'].shape}; the first one has {shape}: all must share frame count and size")
        names = sorted({name for item in items for name in item["labels"]})
        labels = {}
        for name in names:
            missing = [os.path.basename(f) for f, item in zip(folders, items) if name not in item["labels"]]
            require(not missing, f"label {name!r} is missing from trajectories {missing[:3]}")
            labels[name] = np.array([item["labels"][name] for item in items])
        num_classes = {name: self.num_classes.get(name, int(labels[name].max()) + 1) for name in names}
        arrays = {key: np.stack([item[key] for item in items])
                  for key in ("rgb", "depth", "quaternions", "translations", "times", "intrinsics")}
        self._scenes = SceneTrajectories(labels=labels, num_classes=num_classes, **arrays).validate()
        return self._scenes


def write_trajectory_directory(scenes: SceneTrajectories, path: str) -> None:
    """Write `scenes` in the layout above (trajectory folders traj_00000, ...)."""
    from PIL import Image
    for n in range(len(scenes)):
        folder = os.path.join(path, f"traj_{n:05d}")
        os.makedirs(folder, exist_ok=True)
        for k in range(scenes.frames):
            pixels = np.clip(np.round(scenes.rgb[n, k] * 255), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, _frame_name(k)))
        np.save(os.path.join(folder, DEPTH_FILE), scenes.depth[n].astype(np.float32))
        frames = [{"time": float(scenes.times[n, k]), "quaternion": scenes.quaternions[n, k].tolist(),
                   "translation": scenes.translations[n, k].tolist()} for k in range(scenes.frames)]
        cameras = {"intrinsics": scenes.intrinsics[n].tolist(), "frames": frames,
                   "labels": {name: int(values[n]) for name, values in scenes.labels.items()}}
        with open(os.path.join(folder, CAMERAS_FILE), "w") as handle:
            json.dump(cameras, handle, indent=1)
