"""Export to safetensors and start from it; TensorBoard, metrics.jsonl and the config record."""
from __future__ import annotations

import os

import gin
from tensorboard.backend.event_processing import event_accumulator

from engine import checkpoint
from launch.export import main as export_main
from tests.helpers import TINY_PVR, train_in_process

EVAL = ["train.eval_every = 20", "CPVR.eval_examples_per_level = 32"]


def test_export_then_init_from_gives_the_same_eval_loss(tmp_path):
    source = str(tmp_path / "source")
    first = train_in_process(source, TINY_PVR + EVAL + ["train.steps = 20"])
    out = str(tmp_path / "model.safetensors")
    assert export_main([source, "--out", out]) == 0
    # One step with a zero learning rate leaves the imported weights untouched.
    second = train_in_process(str(tmp_path / "from_export"), TINY_PVR + EVAL + [
        "train.steps = 1", "AdamW.lr = 0.0", f"train.init_from = '{out}'"])
    assert second.metrics["eval"]["loss"] == first.metrics["eval"]["loss"]
    # ... and a run that starts from scratch does not get there by chance.
    third = train_in_process(str(tmp_path / "scratch"), TINY_PVR + EVAL + ["train.steps = 1", "AdamW.lr = 0.0"])
    assert third.metrics["eval"]["loss"] != first.metrics["eval"]["loss"]


def test_init_from_a_mismatched_file_is_a_config_error(tmp_path):
    import pytest
    from safetensors.torch import save_file
    import torch
    from engine.errors import ConfigError
    bad = str(tmp_path / "bad.safetensors")
    save_file({"nonsense": torch.zeros(2)}, bad)
    with pytest.raises(ConfigError, match="does not match the model"):
        train_in_process(str(tmp_path / "run"), TINY_PVR + ["train.steps = 1", f"train.init_from = '{bad}'"])


def test_tensorboard_has_scalars_config_text_and_plots(tmp_path):
    workdir = str(tmp_path / "run")
    train_in_process(workdir, TINY_PVR + EVAL + ["train.steps = 20"])
    acc = event_accumulator.EventAccumulator(os.path.join(workdir, "tb"),
                                             size_guidance={event_accumulator.SCALARS: 0,
                                                            event_accumulator.TENSORS: 0,
                                                            event_accumulator.IMAGES: 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in ("train/loss", "train/lr", "train/grad_norm", "train/examples_per_s", "train/tokens_per_s",
                "train/step_time_s", "train/peak_memory_mb", "eval/accuracy/hops_1", "eval/accuracy/out_of_range"):
        assert tag in tags["scalars"], tag
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 21))
    assert "config/config.gin/text_summary" in tags["tensors"]
    text = acc.Tensors("config/config.gin/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "train.steps = 20" in text
    assert "eval/accuracy_vs_hops" in tags["images"]


def test_config_record_and_operative_config_reparse(tmp_path):
    workdir = str(tmp_path / "run")
    train_in_process(workdir, TINY_PVR + ["train.steps = 3"])
    written = open(os.path.join(workdir, "config.gin")).read()
    assert "train.steps = 3" in written
    operative = open(os.path.join(workdir, "operative_config.gin")).read()
    assert "AdamW.eps = 1e-08" in operative  # defaults are recorded too
    gin.clear_config()
    gin.parse_config(operative)  # and the record is itself a valid config
    assert gin.query_parameter("train.steps") == 3


def test_keep_checkpoints_retains_the_newest(tmp_path):
    workdir = str(tmp_path / "run")
    train_in_process(workdir, TINY_PVR + ["train.steps = 50", "train.keep_checkpoints = 2"])
    assert [s for s, _ in checkpoint.complete_checkpoints(workdir)] == [40, 50]
    assert checkpoint.latest(workdir).endswith("step_000050")
