"""The GAUDI auto-decoder: one trajectory over-fits to a high PSNR, decoded poses are unit
quaternions, the latent noise acts only in training, and chunked rendering is exact."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from engine.errors import ConfigError
from engine.data import Shard
from models.gaudi.model import GAUDI
from tasks.scenes.autodecoding import SceneAutoDecoding
from tasks.scenes.trajectories import ProceduralRooms, SceneSource
from tests.helpers import fit_task

RESOLUTION = 12


class OneTrajectory(SceneSource):
    """Trajectory 1 of a tiny room set, alone."""

    def __init__(self, rooms: ProceduralRooms) -> None:
        self.rooms = rooms

    def load(self):
        scenes = self.rooms.load()
        arrays = {k: getattr(scenes, k)[1:2] for k in
                  ("rgb", "depth", "quaternions", "translations", "times", "intrinsics", "half_extents")}
        return dataclasses.replace(scenes, labels={}, num_classes={}, **arrays)


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    return ProceduralRooms(count=2, frames=2, resolution=RESOLUTION, cache_dir=str(tmp_path_factory.mktemp("cache")))


def small_gaudi(num_scenes: int, **overrides) -> GAUDI:
    settings = dict(num_scenes=num_scenes, plane_resolution=32, plane_channels=8, decoder_channels=8, field_hidden=32,
                    samples_per_ray=32, latent_noise=0.0)
    return GAUDI(**{**settings, **overrides})


@pytest.mark.slow
def test_one_trajectory_overfits_to_high_psnr(rooms):
    task = SceneAutoDecoding(scenes=OneTrajectory(rooms), rays_per_frame=RESOLUTION ** 2, eval_trajectories=1,
                             strip_trajectories=0)
    torch.manual_seed(0)
    model = small_gaudi(1)
    fit_task(task, model, steps=200, lr=1e-2, batch_size=1)
    with torch.no_grad():
        metrics = {k: v.value for k, v in task.evaluate(model, "train", Shard(batch_size=1)).items()}
    assert metrics["psnr"] >= 30.0
    assert metrics["depth_l1"] < 0.02
    assert metrics["rotation_error_deg"] < 1.0 and metrics["translation_error"] < 0.01


def test_decoded_poses_are_unit_quaternions_and_noise_acts_only_in_training():
    model = small_gaudi(4, latent_noise=0.5, samples_per_ray=8, aggregation="concat")
    index, times = torch.tensor([0, 3]), torch.linspace(-1, 1, 5).expand(2, 5)
    quaternion, translation = model.pose_decoder(model.split(model.latent(index))[1], times)
    assert quaternion.shape == (2, 5, 4) and translation.shape == (2, 5, 3)
    assert torch.allclose(quaternion.norm(dim=-1), torch.ones(2, 5))
    model.train()
    assert not torch.equal(model.latent(index), model.latent(index))
    model.eval()
    assert torch.equal(model.latent(index), model.latents()[index])


def test_chunked_rendering_equals_one_pass():
    torch.manual_seed(1)
    whole = small_gaudi(2, samples_per_ray=8, render_chunk=10_000).eval()
    chunked = small_gaudi(2, samples_per_ray=8, render_chunk=7).eval()
    chunked.load_state_dict(whole.state_dict())
    z = whole.latents() + torch.randn(2, whole.latent_dim)
    times, intrinsics = torch.tensor([[-1.0, 1.0]] * 2), torch.tensor([[5.0, 3.0, 3.0]] * 2)
    with torch.no_grad():
        a, b = whole.render_frames(z, times, intrinsics, 6, 6), chunked.render_frames(z, times, intrinsics, 6, 6)
    assert a["rgb"].shape == (2, 2, 6, 6, 3) and a["depth"].shape == (2, 2, 6, 6)
    for key in ("rgb", "depth", "opacity"):
        assert torch.allclose(a[key], b[key], atol=1e-6)


def test_bad_gaudi_settings_fail_clearly():
    with pytest.raises(ConfigError, match="near < far"):
        GAUDI(num_scenes=2, near=2.0, far=1.0)
    with pytest.raises(ConfigError, match="aggregation"):
        GAUDI(num_scenes=2, aggregation="max")
    with pytest.raises(ConfigError, match="resolution"):
        GAUDI(num_scenes=2, plane_resolution=30, upsamplings=2)
