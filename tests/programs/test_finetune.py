"""The `finetune` program: pre-train, then fine-tune copies of the weights per downstream task."""
from __future__ import annotations

import os

import torch

from engine import checkpoint
from engine.logging import read_metrics
import programs.finetune
from tests.helpers import print_config, stop_first_stage, tiny_config, train_in_process

TINY_T5 = tiny_config("tiny_t5")


def test_pretrain_then_each_downstream_stage_starts_from_the_pretrained_weights(tmp_path):
    workdir = str(tmp_path / "run")
    results = train_in_process(workdir, TINY_T5 + [
        "train.steps = 3", "finetune.downstream = ['topic', 'spliced']",
        "topic/train.steps = 1", "spliced/train.steps = 2", "topic/AdamW.lr = 0.0"],
        files=("gin/scaling/t5_finetune.gin",))
    assert set(results) == {"pretrain", "topic", "spliced"}
    pretrained = checkpoint.consolidated_state_dict(results["pretrain"].checkpoint)
    # With a zero learning rate the topic stage's weights are exactly the pre-trained ones.
    for name, value in results["topic"].model.state_dict().items():
        assert torch.equal(value.cpu(), pretrained[name]), name
    assert max(r["step"] for r in read_metrics(os.path.join(workdir, "spliced"))) == 2
    assert not os.path.exists(os.path.join(workdir, "reversed"))


def test_a_given_checkpoint_skips_pretraining(tmp_path):
    first = train_in_process(str(tmp_path / "a"), TINY_T5 + ["train.steps = 2", "finetune.downstream = []"],
                             files=("gin/scaling/t5_finetune.gin",))
    source = first["pretrain"].checkpoint
    results = train_in_process(str(tmp_path / "b"), TINY_T5 + [
        "FINETUNE_STEPS = 1", "finetune.downstream = ['topic']", f"finetune.checkpoint = '{source}'"],
        files=("gin/scaling/t5_finetune.gin",))
    assert set(results) == {"topic"} and not os.path.exists(str(tmp_path / "b" / "pretrain"))


def stage_headers(report: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith("# stage ")]


def test_print_config_checks_every_stage_without_training(tmp_path):
    code, out = print_config(str(tmp_path / "run"), TINY_T5 + ["finetune.downstream = ['topic', 'spliced']"],
                             files=("gin/scaling/t5_finetune.gin",))
    assert code == 0 and not os.path.exists(tmp_path / "run")
    assert stage_headers(out) == ["# stage 'pretrain':", "# stage 'topic':", "# stage 'spliced':"]
    assert out.count("# parameters: ") == 3 and "T5.d_model = 16" in out


def test_a_pretraining_stopped_by_a_signal_ends_the_program_and_the_same_command_resumes(tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    bindings = TINY_T5 + ["train.steps = 3", "finetune.downstream = ['topic']", "topic/train.steps = 1"]
    stop_first_stage(monkeypatch, programs.finetune)
    stopped = train_in_process(workdir, bindings, files=("gin/scaling/t5_finetune.gin",))
    assert set(stopped) == {"pretrain"} and stopped["pretrain"].step == 1 and not stopped["pretrain"].finished
    assert not os.path.exists(os.path.join(workdir, "topic"))
    resumed = train_in_process(workdir, bindings, files=("gin/scaling/t5_finetune.gin",))
    assert resumed["pretrain"].step == 3 and resumed["pretrain"].finished and resumed["topic"].finished
