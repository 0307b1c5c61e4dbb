"""The Hyper-UT reproduction reads its hop ranges and tasks from the flagship gin exactly as the
runs parse it (bindings included), and leaves gin empty for the next configuration."""
import gin
import pytest

from launch.reproductions import hyperut


def test_hop_ranges_follow_the_bindings_and_gin_is_reset_after():
    evaluated, trained = hyperut._hop_ranges(["CPVR.eval_hops = (2, 8)", "CPVR.train_hops = (1, 2)"])
    assert (evaluated, trained) == (range(2, 9), range(1, 3))
    with pytest.raises(ValueError):
        gin.query_parameter("CPVR.eval_hops")


def test_task_for_builds_the_configured_task():
    task = hyperut._task_for(["gin/hyperut/hyperut_pvr.gin"], ["CPVR.length = 8"])
    assert type(task).__name__ == "CPVR" and task.length == 8
