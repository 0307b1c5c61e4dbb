"""The activation-checkpointing benchmark at a tiny size: both arms train to the same weights and
the recomputing arm's step needs less memory, as recorded."""
from __future__ import annotations

import json

from launch.benchmarks import activation_checkpointing


def test_records_less_memory_and_identical_training(tmp_path):
    args = ["--length", "256", "--variants", "naive,linear", "--steps", "1", "--out", str(tmp_path)]
    assert activation_checkpointing.main(args) == 0  # nonzero when the arms' weights differ
    record = json.load(open(tmp_path / "activation_checkpointing.json"))
    rows = record["tables"]["by_attention"]["rows"]
    assert [row["model"] for row in rows] == ["Transformer (naive)", "Linear Trans."]
    for row in rows:
        assert row["same_weights"] and row["checkpointed_mib"] < 0.8 * row["plain_mib"]
        assert abs(row["memory_ratio"] - row["checkpointed_mib"] / row["plain_mib"]) < 1e-9
    assert record["figures"]["dense_memory_ratio"] == rows[0]["memory_ratio"]
