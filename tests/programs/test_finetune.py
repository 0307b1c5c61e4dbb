"""The `finetune` program: pre-train, then fine-tune copies of the weights per downstream task."""
from __future__ import annotations

import os

import torch

from engine import checkpoint
from engine.logging import read_metrics
from tests.helpers import train_in_process

TINY_T5 = ["T5.d_model = 16", "T5.d_ff = 32", "T5.d_kv = 8", "T5.num_heads = 2", "T5.encoder_layers = 1",
           "T5.decoder_layers = 1", "SpanCorruption.length = 16", "LatentStructure.length = 16",
           "T5.max_input_length = 16", "train.batch_size = 4", "train.log_every = 1", "train.eval_every = 0",
           "SpanCorruption.eval_batches = 1", "LatentStructure.eval_batches = 1"]


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
