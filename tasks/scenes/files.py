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
Frames must be 8-bit RGB PNGs exactly as listed (no conversion from other modes), and every
malformed file is a ConfigError naming it, never a silently converted frame or wrong label.
"""
from __future__ import annotations

import json
import math
import os

import gin
import numpy as np

from engine.errors import require
from engine.file_errors import file_error, reading, require_file
from tasks.images.sources.files import read_image
from tasks.scenes.camera_paths import frame_times
from tasks.scenes.trajectories import SceneSource, SceneTrajectories

CAMERAS_FILE, DEPTH_FILE = "cameras.json", "depth.npy"


def _frame_name(k: int) -> str:
    return f"rgb_{k:03d}.png"


def _numbers(value, count: int, path: str, what: str) -> list:
    """`value` if it is a list of `count` finite numbers, else a ConfigError naming file and field."""
    if not (isinstance(value, list) and len(value) == count
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        raise file_error(path, f"{what} must be a list of {count} finite numbers, got {json.dumps(value)[:60]}")
    return value


def _read_cameras(path: str) -> tuple[list, list, list, list | None, dict]:
    """(intrinsics, quaternions, translations, times or None, labels) of one cameras.json."""
    require_file(path, "the cameras of a trajectory (layout in tasks/scenes/files.py)")
    with reading(path), open(path, encoding="utf-8") as handle:
        try:
            cameras = json.load(handle)
        except json.JSONDecodeError as error:
            raise file_error(path, f"is not valid JSON ({error.msg}); truncated?", line=error.lineno) from None
    frames = cameras.get("frames") if isinstance(cameras, dict) else None
    if not isinstance(frames, list) or not frames or not all(isinstance(f, dict) for f in frames):
        raise file_error(path, 'needs "frames": a non-empty list of {"quaternion", "translation"[, "time"]}')
    intrinsics = _numbers(cameras.get("intrinsics"), 3, path, '"intrinsics" ([focal, cx, cy])')
    quaternions = [_numbers(f.get("quaternion"), 4, path, f'frames[{k}].quaternion') for k, f in enumerate(frames)]
    for k, q in enumerate(quaternions):
        if not any(q):
            raise file_error(path, f"frames[{k}].quaternion is zero, not a rotation")
    translations = [_numbers(f.get("translation"), 3, path, f'frames[{k}].translation') for k, f in enumerate(frames)]
    times = None
    if all("time" in f for f in frames):
        times = [_numbers([f["time"]], 1, path, f"frames[{k}].time")[0] for k, f in enumerate(frames)]
        late = [k for k, t in enumerate(times) if abs(t) > 1 + 1e-6]
        if late:
            raise file_error(path, f"frames[{late[0]}].time is {times[late[0]]}, outside [-1, 1]")
    labels = cameras.get("labels", {})
    if not isinstance(labels, dict):
        raise file_error(path, f'"labels" must map names to class indices, got {json.dumps(labels)[:60]}')
    for name, value in labels.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise file_error(path, f"label {name!r} is {json.dumps(value)}, not a class index (an integer >= 0)")
    return intrinsics, quaternions, translations, times, labels


def _read_trajectory(folder: str) -> dict:
    """One trajectory folder, checked as it is read: a missing, truncated or unparsable file, a
    frame count that disagrees with cameras.json, a frame that is not 8-bit RGB or not the size
    of the first, and a depth map of another shape are ConfigErrors naming the file."""
    cameras_file = os.path.join(folder, CAMERAS_FILE)
    intrinsics, quaternions, translations, times, labels = _read_cameras(cameras_file)
    names = [_frame_name(k) for k in range(len(quaternions))]
    present = {f for f in os.listdir(folder) if f.startswith("rgb_") and f.endswith(".png")}
    missing, extra = [n for n in names if n not in present], sorted(present - set(names))
    if missing or extra:
        raise file_error(cameras_file, f"lists {len(names)} frames but {folder} "
                         + (f"lacks {missing[:3]}" if missing else f"also holds {extra[:3]}")
                         + " (frame k goes with pose k)")
    rgb = []
    for name in names:
        path = os.path.join(folder, name)
        pixels = np.asarray(read_image(path, "RGB", modes=("RGB",)))
        if rgb and pixels.shape != rgb[0].shape:
            raise file_error(path, f"is {pixels.shape[1]}x{pixels.shape[0]} pixels but {names[0]} is "
                             f"{rgb[0].shape[1]}x{rgb[0].shape[0]}; a trajectory's frames share one size")
        rgb.append(pixels)
    rgb = np.stack(rgb).astype(np.float32) / 255.0
    depth_file = require_file(os.path.join(folder, DEPTH_FILE), "float32 (F, H, W) depth")
    with reading(depth_file):
        depth = np.load(depth_file, allow_pickle=False)
    if depth.shape != rgb.shape[:3] or not np.issubdtype(depth.dtype, np.number):
        raise file_error(depth_file, f"holds {depth.dtype} {depth.shape}; the frames need numbers of shape "
                         f"{rgb.shape[:3]} (frames, height, width)")
    quaternions = np.array(quaternions, dtype=np.float64)
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    quaternions *= np.where(quaternions[:, :1] < 0, -1.0, 1.0)  # the w >= 0 representative
    times = (np.array(times, dtype=np.float32) if times is not None
             else frame_times(len(names)).astype(np.float32))
    return {"rgb": rgb, "depth": depth.astype(np.float32), "quaternions": quaternions.astype(np.float32),
            "translations": np.array(translations, dtype=np.float32), "times": times,
            "intrinsics": np.array(intrinsics, dtype=np.float32), "labels": labels}


@gin.configurable
class TrajectoryDirectory(SceneSource):
    """Every trajectory folder under `path` (layout in the module docstring; names starting with
    '.' are ignored). Label classes are counted from the data unless `num_classes` ({name: count})
    is given, and a label outside it is refused. Every file is checked as it is read: a missing,
    truncated or malformed one is a ConfigError naming it (`_read_trajectory`), raised when the
    task first asks for data, i.e. in the pre-flight check before training."""

    def __init__(self, *, path: str = gin.REQUIRED, num_classes: dict[str, int] | None = None) -> None:
        self.path = os.path.expanduser(path)
        self.num_classes = dict(num_classes or {})
        self._scenes: SceneTrajectories | None = None

    def load(self) -> SceneTrajectories:
        if self._scenes is not None:
            return self._scenes
        require(os.path.isdir(self.path), f"TrajectoryDirectory.path {self.path!r} is not a directory")
        folders = sorted(e.path for e in os.scandir(self.path) if e.is_dir() and not e.name.startswith("."))
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
        for name in names:
            beyond = np.flatnonzero(labels[name] >= num_classes[name])
            if beyond.size:
                raise file_error(os.path.join(folders[beyond[0]], CAMERAS_FILE), f"label {name!r} is "
                                 f"{labels[name][beyond[0]]}, outside TrajectoryDirectory.num_classes[{name!r}] = "
                                 f"{num_classes[name]}")
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
