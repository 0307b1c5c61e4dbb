"""The LRA gin files: every task file parses alone with consistent lengths and the released
hyperparameters, and the retrieval file trains the two-tower model (the study that runs them:
tests/launch/test_reproduce_lra.py)."""
from __future__ import annotations

import glob
import logging
import math
import os

import gin
import pytest

from engine import config
from tests.helpers import REPO, train_in_process

def value(name: str):
    """A bound value with macros (%SEQ_LEN) resolved."""
    bound = gin.query_parameter(name)
    while isinstance(bound, gin.config.ConfigurableReference) and bound.configurable.name == "macro":
        bound = gin.query_parameter("%" + bound.scoped_selector.rsplit("/", 1)[0])
    return bound


# Every task file; base.gin holds shared settings and is only ever included by them.
TASK_FILES = sorted(p for p in glob.glob(os.path.join(REPO, "gin", "lra", "*.gin")) if os.path.basename(p) != "base.gin")


@pytest.mark.parametrize("path", TASK_FILES, ids=os.path.basename)
def test_task_files_parse_alone_and_seq_len_covers_what_the_encoder_sees(path):
    config.parse([path])
    seq_len = value("%SEQ_LEN")
    assert value("TransformerClassifier.max_len") == seq_len
    cls = value("TransformerClassifier.pooling") == "cls"
    task = value("train.task").configurable.name
    if task == "LRAListOps":
        tokens = value("LRAListOps.max_length") - 1  # lengths are strictly below the bound
    elif task == "LRAPathfinder":
        tokens = value("LRAPathfinder.image_size") ** 2
        assert not cls and value("TransformerClassifier.cls_token") is False
    elif task == "LRAImage":
        tokens = 1024
    else:
        tokens = value(f"{task}.max_length")
    assert tokens + int(cls) == seq_len


def test_full_task_files_hold_the_released_hyperparameters():
    config.parse([os.path.join(REPO, "gin", "lra", "listops.gin")])
    assert math.isclose(value("AdamW.lr"), 0.05 / math.sqrt(1000), rel_tol=1e-3)
    assert value("TransformerClassifier.d_model") == 512 and value("TransformerClassifier.num_layers") == 4
    assert value("train.steps") == 5000 and value("train.batch_size") == 32
    config.reset()
    config.parse([os.path.join(REPO, "gin", "lra", "pathx.gin")])
    assert value("LRAPathfinder.image_size") == 128 and value("%SEQ_LEN") == 16384
    assert value("train.grad_clip") == 1.0 and value("train.batch_size") == 64


def test_retrieval_file_trains_the_two_tower_model_and_says_it_uses_the_stand_in(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv("LRA_DATA", raising=False)
    bindings = ["train.steps = 3", "train.batch_size = 4", "train.eval_every = 3", "train.checkpoint_every = 0",
                "LRARetrieval.max_length = 128", "SEQ_LEN = 129", "LRARetrieval.num_train = 16",
                "LRARetrieval.num_eval = 4", "LRARetrieval.num_test = 4", "TransformerClassifier.d_model = 16",
                "TransformerClassifier.num_layers = 1", "TransformerClassifier.d_ff = 16"]
    with caplog.at_level(logging.WARNING, logger="tasks.lra"):
        result = train_in_process(str(tmp_path / "run"), bindings, files=("gin/lra/retrieval_small.gin",))
    assert "STAND-IN" in caplog.text  # the log says the data is not AAN
    assert type(result.model).__name__ == "TwoTowerClassifier" and result.step == 3
    assert set(result.metrics) == {"eval", "test"}
