"""Malformed trajectory folders (tasks/scenes/files.py): a missing, truncated or unparsable
cameras.json, depth.npy or frame, a frame count or size that disagrees, a frame that is not 8-bit
RGB, and a label that is not a class index are each one ConfigError naming the file."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from tasks.scenes.files import CAMERAS_FILE, DEPTH_FILE, TrajectoryDirectory, write_trajectory_directory
from tasks.scenes.trajectories import SceneTrajectories
from tests.helpers import config_error


@pytest.fixture
def root(tmp_path) -> str:
    """Three trajectories of 3 frames at 4x5 pixels, labels 'floor' 0..2, written in the layout."""
    n, f, h, w = 3, 3, 4, 5
    rng = np.random.default_rng(0)
    angles = rng.uniform(0, np.pi, (n, f))
    scenes = SceneTrajectories(
        rgb=rng.uniform(0, 1, (n, f, h, w, 3)).astype(np.float32),
        depth=rng.uniform(1, 2, (n, f, h, w)).astype(np.float32),
        quaternions=np.stack([np.cos(angles), 0 * angles, np.sin(angles), 0 * angles], -1).astype(np.float32),
        translations=rng.normal(size=(n, f, 3)).astype(np.float32),
        times=np.tile(np.linspace(-1, 1, f, dtype=np.float32), (n, 1)),
        intrinsics=np.tile(np.array([5.0, 2.5, 2.0], dtype=np.float32), (n, 1)),
        labels={"floor": np.array([0, 1, 2])}, num_classes={"floor": 3})
    write_trajectory_directory(scenes.validate(), str(tmp_path / "real"))
    return str(tmp_path / "real")


def cameras(root: str, trajectory: int = 1) -> str:
    return os.path.join(root, f"traj_{trajectory:05d}", CAMERAS_FILE)


def edit_cameras(root: str, change) -> str:
    path = cameras(root)
    with open(path) as handle:
        data = json.load(handle)
    change(data)
    with open(path, "w") as handle:
        json.dump(data, handle)
    return path


def load(root: str, **kwargs):
    return TrajectoryDirectory(path=root, **kwargs).load()


def test_the_written_folder_loads_and_hidden_folders_are_ignored(root):
    os.makedirs(os.path.join(root, ".thumbnails"))
    scenes = load(root)
    assert len(scenes) == 3 and scenes.labels["floor"].tolist() == [0, 1, 2]


def test_missing_and_truncated_cameras_json(root):
    path = cameras(root)
    text = open(path).read()
    with open(path, "w") as handle:
        handle.write(text[:len(text) // 2])
    last_line = text[:len(text) // 2].count("\n") + 1
    with config_error(f"{path}, line {last_line}: is not valid JSON", "truncated?"):
        load(root)
    os.remove(path)
    with config_error(path, "no such file"):
        load(root)


@pytest.mark.parametrize("change, problem", [
    (lambda d: d.pop("frames"), 'needs "frames"'),
    (lambda d: d.update(intrinsics=[5.0, 2.5]), '"intrinsics" ([focal, cx, cy]) must be a list of 3 finite numbers'),
    (lambda d: d["frames"][2].update(quaternion=[1, 0, 0]), "frames[2].quaternion must be a list of 4 finite numbers"),
    (lambda d: d["frames"][0].update(quaternion=[0, 0, 0, 0]), "frames[0].quaternion is zero"),
    (lambda d: d["frames"][1].update(translation=[0, "x", 0]), "frames[1].translation must be a list of 3"),
    (lambda d: d["frames"][1].update(time=1.5), "frames[1].time is 1.5, outside [-1, 1]"),
    (lambda d: d["labels"].update(floor=1.5), "label 'floor' is 1.5, not a class index"),
    (lambda d: d["labels"].update(floor=-1), "label 'floor' is -1, not a class index"),
    (lambda d: d.update(frames=d["frames"][:2]), "lists 2 frames but"),
])
def test_malformed_cameras_json_names_the_file_and_field(root, change, problem):
    path = edit_cameras(root, change)
    with config_error(path, problem):
        load(root)


def test_a_label_beyond_the_given_classes_is_refused(root):
    with config_error(cameras(root, 2), "label 'floor' is 2, outside TrajectoryDirectory.num_classes['floor'] = 2"):
        load(root, num_classes={"floor": 2})


def test_frames_missing_truncated_resized_or_not_rgb(root):
    folder = os.path.dirname(cameras(root))
    frame = os.path.join(folder, "rgb_001.png")
    original = open(frame, "rb").read()
    os.remove(frame)
    with config_error(cameras(root), "lacks ['rgb_001.png']"):
        load(root)
    with open(frame, "wb") as handle:
        handle.write(original[:40])
    with config_error(frame, "is not a readable image", "truncated or corrupt?"):
        load(root)
    Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8)).save(frame)
    with config_error(frame, "is 6x4 pixels but rgb_000.png is 5x4"):
        load(root)
    Image.fromarray(np.zeros((4, 5, 4), dtype=np.uint8)).save(frame)
    with config_error(frame, "holds a 'RGBA' image; expected 'RGB'"):
        load(root)
    with open(frame, "wb") as handle:
        handle.write(original)
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(os.path.join(folder, "rgb_003.png"))
    with config_error(cameras(root), "lists 3 frames but", "also holds ['rgb_003.png']"):
        load(root)


def test_depth_missing_truncated_or_of_another_shape(root):
    depth = os.path.join(os.path.dirname(cameras(root)), DEPTH_FILE)
    original = open(depth, "rb").read()
    with open(depth, "wb") as handle:
        handle.write(original[:-30])
    with config_error(depth, "cannot be read"):
        load(root)
    np.save(depth, np.ones((3, 4, 4), dtype=np.float32))
    with config_error(depth, "holds float32 (3, 4, 4); the frames need numbers of shape (3, 4, 5)"):
        load(root)
    os.remove(depth)
    with config_error(depth, "no such file"):
        load(root)
