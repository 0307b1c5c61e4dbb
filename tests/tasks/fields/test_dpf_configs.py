"""The DPF gin files build and check on the task's batches, and a short run of dpf_images.gin
trains, evaluates its EMA weights and writes sample images at two resolutions to TensorBoard."""
from __future__ import annotations

import glob
import os

import pytest

from engine import config, program
from engine.ema import EMA_FILE
from engine.logging import read_metrics
from tests.helpers import REPO, train_in_process

SMALL = ["FieldDiffusion.eval_samples = 8", "FieldDiffusion.grid_fields = 4", "FieldDiffusion.eval_batches = 1",
         "FieldDiffusion.feature_steps = 5", "DDIMSampler.steps = 3", "train.batch_size = 8",
         "train.log_every = 1", "train.checkpoint_every = 0", "WarmupCosine.warmup_steps = 1"]


@pytest.mark.parametrize("name", ["dpf_images", "dpf_digits", "dpf_shapes3d", "dpf_sphere", "dpf_sphere_eigen"])
def test_dpf_gin_files_build_and_fit_their_task(name, tmp_path):
    config.parse([os.path.join(REPO, "gin", "dpf", f"{name}.gin")], ["ShapeFields.train_fields = 40",
                                                              "OccupancyFields.train_fields = 40",
                                                              "SphereFields.train_fields = 40"])
    result = program.main(str(tmp_path), dry_run=True)
    assert "# parameters:" in result.report and result.step == 0 and not os.listdir(tmp_path)


def test_dpf_images_trains_and_logs_samples_at_a_resolution_unseen_in_training(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    workdir = str(tmp_path / "run")
    bindings = SMALL + ["train.steps = 3", "train.eval_every = 3", "ShapeFields.train_fields = 40",
                        "ShapeFields.eval_fields = 16"]
    result = train_in_process(workdir, bindings, files=("gin/dpf/dpf_images.gin",))
    assert result.step == 3 and os.path.isfile(os.path.join(workdir, EMA_FILE))
    final = [r for r in read_metrics(workdir) if r["split"] == "eval"][-1]
    assert {"kid", "precision", "recall", "ema/kid", "ema/recall"} <= set(final)
    events = EventAccumulator(glob.glob(os.path.join(workdir, "tb"))[0], size_guidance={"images": 0})
    events.Reload()
    tags = set(events.Tags()["images"])
    assert {"eval/samples_32x32", "eval/samples_64x64_unseen", "eval/ema/samples_64x64_unseen"} <= tags
    unseen = events.Images("eval/samples_64x64_unseen")[-1]
    assert (unseen.width, unseen.height) == (2 * 64 + 1, 2 * 64 + 1)
