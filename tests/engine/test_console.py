"""The console a person reads: human units, compact eval lines, and a closing summary that says
where the run is and where to look next (metrics.jsonl keeps every metric)."""
from __future__ import annotations

import os

from engine.logging import breakdown_table, format_metric, headline, read_metrics
from tests.helpers import TINY_PVR, train_in_process


def test_sizes_print_in_human_units():
    assert format_metric("parameter_bytes/rank_0", 6.593e6) == "6.6 MB"
    assert format_metric("peak_memory_mb/rank_1", 1534.2) == "1.5 GB"
    assert format_metric("optimizer_bytes", 512) == "512 B"
    assert format_metric("accuracy", 0.5) == "0.5"


def test_an_eval_line_shows_the_headline_metrics_and_counts_the_rest():
    record = {"step": 4, "split": "eval", "loss": 2.0, "accuracy": 0.5,
              "accuracy/hops_1": 1.0, "accuracy/hops_2": 0.0, "ponder/hops_1": 3.0}
    shown, left_out = headline(record)
    assert shown == {"loss": 2.0, "accuracy": 0.5} and left_out == 3
    only_parts = {"step": 1, "split": "memory", "parameter_bytes/rank_0": 1e6, "parameter_bytes/rank_1": 1e6}
    assert headline(only_parts) == ({"parameter_bytes/rank_0": 1e6, "parameter_bytes/rank_1": 1e6}, 0)


def test_the_breakdown_table_has_a_row_per_level_and_a_column_per_metric():
    record = {"loss": 2.0, "accuracy/hops_1": 1.0, "accuracy/hops_2": 0.25, "ponder/hops_2": 3.0}
    lines = breakdown_table(record).splitlines()
    assert lines[0].split() == ["accuracy", "ponder"]
    assert lines[1].split() == ["hops_1", "1", "-"] and lines[2].split() == ["hops_2", "0.25", "3"]
    assert breakdown_table({"loss": 1.0}) == ""


def test_a_run_says_where_it_is_and_ends_with_a_summary_while_metrics_jsonl_keeps_everything(tmp_path, capsys):
    workdir = str(tmp_path / "run")
    train_in_process(workdir, TINY_PVR + ["train.steps = 4", "train.eval_every = 4"])
    out = capsys.readouterr().out
    assert f"run {workdir}: TransformerClassifier" in out.splitlines()[0]
    assert "done: step 4/4" in out and f"tensorboard --logdir {os.path.join(workdir, 'tb')}" in out
    assert "hops_4" in out.split("done:")[1]  # the per-level table of the final evaluation
    evals = [r for r in read_metrics(workdir) if r["split"] == "eval"]
    assert "accuracy/hops_4" in evals[-1]


def test_deepspeeds_deprecated_collective_warnings_stay_out_of_the_console():
    import warnings

    from engine.strategies.deepspeed import silence_deprecated_collectives
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_deprecated_collectives()  # what DeepSpeed.prepare does
        warnings.warn("`torch.distributed.reduce_scatter_tensor` is deprecated. Please use "
                      "`torch.distributed.reduce_scatter_single` instead.", FutureWarning)
        warnings.warn("something else is deprecated", FutureWarning)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]
