"""The strategies benchmark's sizes and crossover, without torchrun jobs (tests/engine/test_strategies.py
runs every strategy): each `--size` preset has the parameter count it is named for, and the
crossover is the size at which a strategy's memory ratio to DDP falls below 1."""
from __future__ import annotations

import math
import os

import pytest
import torch

from launch.benchmarks import strategies
from tests.helpers import REPO


@pytest.mark.parametrize("size, millions", [("25m", 25), ("100m", 100), ("150m", 150), ("300m", 300)])
def test_each_size_preset_has_the_parameters_it_is_named_for(size, millions):
    from engine import config
    from models.transformer import TransformerClassifier
    config.reset()
    config.parse([os.path.join(REPO, "gin", "hyperut", "transformer_pvr.gin")], strategies.SIZES[size])
    with torch.device("meta"):  # counted, never allocated
        count = sum(p.numel() for p in TransformerClassifier().parameters())
    assert abs(count / (millions * 1e6) - 1) < 0.02, count


def test_the_crossover_is_interpolated_between_the_sizes_around_one():
    point = strategies.crossover([(25e6, 1.2), (100e6, 0.8), (300e6, 0.6)])
    assert point == pytest.approx(math.exp((math.log(25e6) + math.log(100e6)) / 2))  # halfway in log size
    assert strategies.crossover([(25e6, 0.9), (100e6, 0.7)]) == 25e6  # below 1 already at the smallest
    assert strategies.crossover([(25e6, 1.3), (100e6, 1.1)]) is None
    assert strategies.crossover([(25e6, 0.9), (100e6, 1.1)]) is None  # not below at the largest


def test_an_unknown_size_is_refused_before_any_job(capsys):
    with pytest.raises(SystemExit):
        strategies.main(["--size", "25m,7b", "--no-save"])
    assert "7b" in capsys.readouterr().err
