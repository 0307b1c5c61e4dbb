"""Progress of long data generation and the line that says where a cache went: shown once the work
has taken longer than a delay (so quick test-sized sets stay silent), a bar on a terminal, a few
lines in a log, and nothing from ranks other than local rank 0."""
from __future__ import annotations

import io
import os
import re
import time

import numpy as np

from tasks.common import cache
from tasks.common.cache import Progress, announce_cache


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr is in an interactive shell."""

    def isatty(self) -> bool:
        return True


def test_quick_work_prints_nothing():
    stream = io.StringIO()
    with Progress("ListOps: generating", 100, unit="expressions", stream=stream, delay=60) as progress:
        progress.update(100)
    assert stream.getvalue() == ""


def test_without_a_terminal_a_line_per_quarter_and_one_at_the_end():
    stream = io.StringIO()
    with Progress("ListOps: generating", 100, unit="expressions", stream=stream, delay=0, enabled=True) as progress:
        for _ in range(100):
            progress.update()
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("ListOps: generating: 1 / 100 expressions (1%) after ")
    assert [re.search(r"\((\d+)%\)", line).group(1) for line in lines[1:-1]] == ["25", "50", "75"]
    assert re.fullmatch(r"ListOps: generating: done, 100 expressions in \d+\.\d s", lines[-1])


def test_a_long_gap_gets_its_own_line(monkeypatch):
    monkeypatch.setattr(cache, "LINE_EVERY", 0.0)  # every update is "a minute later"
    stream = io.StringIO()
    with Progress("rooms", 1000, stream=stream, delay=0, enabled=True) as progress:
        for _ in range(10):
            progress.update()
    assert len(stream.getvalue().splitlines()) == 11  # ten updates inside the first quarter, then done


def test_a_failure_leaves_no_done_line():
    stream = io.StringIO()
    try:
        with Progress("rooms", 10, stream=stream, delay=0, enabled=True) as progress:
            progress.update()
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert "done" not in stream.getvalue() and "1 / 10" in stream.getvalue()


def test_on_a_terminal_it_is_a_tqdm_bar():
    stream = Terminal()
    with Progress("Pathfinder: drawing 16x16 images", 512, unit="images", stream=stream, delay=0) as progress:
        progress.update(256)
        progress.update(256)
    shown = stream.getvalue()
    assert "\r" in shown and "Pathfinder: drawing 16x16 images" in shown and "512/512" in shown


def test_only_local_rank_zero_reports(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCAL_RANK", "1")
    stream = io.StringIO()
    with Progress("rooms", 10, stream=stream, delay=0) as progress:
        progress.update(10)
    (tmp_path / "a.npy").write_bytes(b"x" * 10)
    announce_cache(str(tmp_path), time.monotonic() - 100, "rooms", delay=0, stream=stream)
    assert stream.getvalue() == ""


def test_the_cache_line_names_the_folder_and_its_size(tmp_path):
    folder = tmp_path / "listops-abc"
    folder.mkdir()
    np.save(folder / "train.tokens.npy", np.zeros(2_500_000, dtype=np.uint8))
    np.save(folder / "train.label.npy", np.zeros(10, dtype=np.int64))
    stream = io.StringIO()
    announce_cache(str(folder), time.monotonic() - 5, "ListOps", delay=1, stream=stream)
    line = stream.getvalue()
    assert line.startswith(f"ListOps: wrote 2.5 MB to {folder} in ") and "$GINTRAIN_CACHE" in line
    quiet = io.StringIO()
    announce_cache(str(folder), time.monotonic(), "ListOps", delay=60, stream=quiet)
    assert quiet.getvalue() == ""


def test_generated_listops_reports_its_progress_and_its_cache(tmp_path, monkeypatch, capsys):
    """End to end: a slow build (here: any build, with the delay at 0) shows progress and the
    cache line on stderr; reading the cache back says nothing."""
    from tasks.lra.listops import LRAListOps
    monkeypatch.setattr(cache, "PROGRESS_DELAY", 0.0)
    sizes = dict(max_length=40, min_length=5, num_train=40, num_eval=8, num_test=8, cache=str(tmp_path))
    LRAListOps(**sizes)
    err = capsys.readouterr().err
    assert "ListOps: generating expressions: done, 56 expressions" in err
    written = re.search(r"ListOps: wrote [\d.]+ MB to (\S+) in ", err)
    assert written and os.path.isdir(written.group(1)) and written.group(1).startswith(str(tmp_path / "lra"))
    LRAListOps(**sizes)
    assert capsys.readouterr().err == ""


def test_lra_stand_ins_report_their_generation(monkeypatch, capsys):
    """The Retrieval stand-in is generated per run (minutes at LRA's sizes): it counts its pairs."""
    from tasks.lra.retrieval import LRARetrieval
    monkeypatch.setattr(cache, "PROGRESS_DELAY", 0.0)
    monkeypatch.delenv("LRA_DATA", raising=False)
    LRARetrieval(max_length=128, num_train=6, num_eval=2, num_test=2)
    assert "LRARetrieval: generating stand-in data: done, 10 examples in " in capsys.readouterr().err
