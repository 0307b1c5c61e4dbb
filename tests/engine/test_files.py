"""Atomic writes: the file appears whole, a failed write leaves the old one and no debris."""
import os

import numpy as np
import pytest

from engine.files import atomic_path, write_atomically


def test_text_and_bytes_replace_the_file_and_leave_nothing_beside_it(tmp_path):
    path = str(tmp_path / "sub" / "latest")
    write_atomically(path, "step_000010")  # creates the folder
    write_atomically(path, "step_000020", fsync=True)
    assert open(path).read() == "step_000020"
    write_atomically(path, b"\x00\x01")
    assert open(path, "rb").read() == b"\x00\x01"
    assert os.listdir(tmp_path / "sub") == ["latest"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "summary.json")
    write_atomically(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("preempted")
    assert open(path).read() == "old" and os.listdir(tmp_path) == ["summary.json"]


def test_suffix_suits_writers_that_add_an_extension(tmp_path):
    path = str(tmp_path / "scenes.npz")
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, x=np.arange(3))
    with np.load(path) as data:
        assert data["x"].tolist() == [0, 1, 2]
    assert os.listdir(tmp_path) == ["scenes.npz"]
