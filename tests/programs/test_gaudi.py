"""The two-stage `gaudi` program end to end at toy size: the auto-decoder stage, then the latent
prior stage, sampled scenes rendered to TensorBoard; a second prior reuses a finished stage 1."""
from __future__ import annotations

import os

import numpy as np
import pytest

from engine.errors import ConfigError
from engine.logging import read_metrics
import programs.gaudi
from tests.helpers import print_config, stop_first_stage, tiny_config, train_in_process

TINY = tiny_config("tiny_gaudi")


def tensorboard_images(workdir: str) -> set[str]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(workdir, "tb"), size_guidance={"images": 0})
    events.Reload()
    return set(events.Tags()["images"])


def test_both_stages_run_from_one_config_and_render_generated_scenes(tmp_path):
    cache = f"ProceduralRooms.cache_dir = '{tmp_path / 'cache'}'"
    result = train_in_process(str(tmp_path / "run"), TINY + [cache], files=("gin/gaudi/gaudi_rooms_conditional.gin",))
    assert result.autodecoder.step == 4 and result.prior.step == 4
    assert result.latents.shape == (6, 80)
    prior = result.prior.metrics["train"]
    for name in ("kid", "inside_room", "step_ratio", "nn_train_ratio", "nn_train_frames_ratio", "label_accuracy",
                 "draw_0/kid"):
        assert np.isfinite(prior[name]), name
    assert 0.0 <= prior["label_accuracy"] <= 1.0 and 0.0 <= prior["inside_room"] <= 1.0
    assert {"eval_train/reconstruction"} <= tensorboard_images(str(tmp_path / "run" / "autodecoder"))
    images = tensorboard_images(str(tmp_path / "run" / "prior"))
    assert {"eval_train/flythrough_0", "eval_train/flythrough_1", "eval_train/samples",
            "eval_train/interpolation"} <= images

    # A second prior on the finished auto-decoder: stage 1 is not trained again.
    shared = str(tmp_path / "run" / "autodecoder")
    before = max(r["step"] for r in read_metrics(shared) if r["split"] == "train")
    again = train_in_process(str(tmp_path / "second"), TINY + [cache, f"gaudi.autodecoder_workdir = '{shared}'",
                                                               "LatentPrior.guidance_scale = 0.0"],
                             files=("gin/gaudi/gaudi_rooms_conditional.gin",))
    assert again.prior.step == 4 and not os.path.exists(tmp_path / "second" / "autodecoder")
    assert max(r["step"] for r in read_metrics(shared) if r["split"] == "train") == before
    assert np.array_equal(again.latents, result.latents)


def test_a_denoiser_of_the_wrong_width_fails_before_the_prior_trains(tmp_path):
    cache = f"ProceduralRooms.cache_dir = '{tmp_path / 'cache'}'"
    with pytest.raises(ConfigError, match="LatentDenoiser.latent_dim = 80"):
        train_in_process(str(tmp_path / "run"), TINY + [cache, "LatentDenoiser.latent_dim = 64", "train.steps = 1",
                                                        "train.eval_every = 0"], files=("gin/gaudi/gaudi_rooms.gin",))


def test_print_config_checks_both_stages_without_training(tmp_path):
    cache = f"ProceduralRooms.cache_dir = '{tmp_path / 'cache'}'"
    code, out = print_config(str(tmp_path / "run"), TINY + [cache], files=("gin/gaudi/gaudi_rooms.gin",))
    assert code == 0 and not os.path.exists(tmp_path / "run")
    assert [line for line in out.splitlines() if line.startswith("# stage ")] == ["# stage 'autodecoder':",
                                                                                  "# stage 'prior':"]
    assert out.count("# parameters: ") == 2
    # The prior's stage is checked too, against an untrained auto-decoder of the configured shape.
    code, _ = print_config(str(tmp_path / "run"), TINY + [cache, "LatentDenoiser.latent_dim = 64"],
                           files=("gin/gaudi/gaudi_rooms.gin",))
    assert code == 2 and not os.path.exists(tmp_path / "run")


def test_an_autodecoder_stopped_by_a_signal_ends_the_program_before_the_prior(tmp_path, monkeypatch):
    cache = f"ProceduralRooms.cache_dir = '{tmp_path / 'cache'}'"
    stop_first_stage(monkeypatch, programs.gaudi)
    result = train_in_process(str(tmp_path / "run"), TINY + [cache], files=("gin/gaudi/gaudi_rooms.gin",))
    assert result.prior is None and result.autodecoder.step == 1 and not result.autodecoder.finished
    assert not os.path.exists(tmp_path / "run" / "prior")
