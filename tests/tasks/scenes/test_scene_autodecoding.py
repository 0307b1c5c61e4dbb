"""Stage 1's data and checks: batches are pure functions of (seed, index) that ranks split
exactly, sampled rays carry the pixels' true colour and depth, and mismatches fail early."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.errors import ConfigError
from engine.data import Shard
from models.gaudi.model import GAUDI
from tasks.scenes.autodecoding import SceneAutoDecoding
from tasks.scenes.trajectories import ProceduralRooms


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    rooms = ProceduralRooms(count=5, frames=3, resolution=8, cache_dir=str(tmp_path_factory.mktemp("cache")))
    return SceneAutoDecoding(scenes=rooms, rays_per_frame=6)


def test_two_ranks_read_the_halves_of_the_single_rank_batch(task):
    whole = next(task.batches("train", Shard(batch_size=4, seed=3, start=2)))
    halves = [next(task.batches("train", Shard(batch_size=4, seed=3, start=2, rank=r, world_size=2))) for r in (0, 1)]
    for key, value in whole.items():
        assert torch.equal(value, torch.cat([h[key] for h in halves])), key
    again = next(task.batches("train", Shard(batch_size=4, seed=3, start=2)))
    assert all(torch.equal(whole[k], again[k]) for k in whole)


def test_sampled_rays_carry_their_pixels_colour_and_depth(task):
    scenes = task.scenes
    batch = next(task.batches("train", Shard(batch_size=3)))
    assert batch["pixels"].shape == (3, scenes.frames, 6, 2) and batch["rgb"].shape == (3, scenes.frames, 6, 3)
    for b, index in enumerate(batch["index"].tolist()):
        for f in range(scenes.frames):
            cols, rows = (batch["pixels"][b, f] - 0.5).long().unbind(-1)
            assert torch.equal(batch["rgb"][b, f], torch.as_tensor(scenes.rgb[index, f, rows, cols]))
            assert torch.equal(batch["depth"][b, f], torch.as_tensor(scenes.depth[index, f, rows, cols]))
        assert np.array_equal(batch["quaternions"][b].numpy(), scenes.quaternions[index])


def test_latent_count_and_depth_range_are_checked_before_training(task):
    batch = next(task.batches("train", Shard(batch_size=2)))
    task._checked = False
    with pytest.raises(ConfigError, match="GAUDI.num_scenes = 5"):
        task.loss(GAUDI(num_scenes=4), batch)
    task._checked = False
    with pytest.raises(ConfigError, match="GAUDI.far"):
        task.loss(GAUDI(num_scenes=5, far=0.5), batch)
    task._checked = False
    with pytest.raises(ConfigError, match="'train'"):
        task.evaluate(GAUDI(num_scenes=5), "eval", Shard(batch_size=2))
