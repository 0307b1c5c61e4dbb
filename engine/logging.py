"""Run logging on rank 0: TensorBoard, `metrics.jsonl` and the console (progress bar or lines).

A resumed run first drops the records (and TensorBoard events) written after the step it
resumes from, so the logs read as if the run had never been interrupted.
"""
from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from typing import Any, Mapping

import numpy as np

from engine import summaries
from engine.errors import storage_cause
from engine.files import write_atomically

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)


def truncate_metrics(path: str, last_step: int) -> None:
    """Keep only records with step <= last_step (atomically)."""
    if not os.path.isfile(path):
        return
    kept = []
    with open(path) as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
            if record.get("step", 0) <= last_step:
                kept.append(line if line.endswith("\n") else line + "\n")
    write_atomically(path, "".join(kept))


def read_metrics(workdir: str) -> list[dict]:
    """Every record of a run's metrics.jsonl."""
    path = os.path.join(workdir, METRICS_FILE)
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _format_value(value: float) -> str:
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.3e}"


def _format_bytes(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def format_metric(name: str, value: float) -> str:
    """A metric as a person reads it: sizes in B/KB/MB/GB (`*_bytes`, `*_mb` names), the rest in
    four significant digits."""
    base = name.split("/", 1)[0]
    if base.endswith("_bytes"):
        return _format_bytes(value)
    if base.endswith("_mb"):
        return _format_bytes(value * 1e6)
    return _format_value(value)


def _format_perf(record: Mapping[str, Any]) -> dict[str, str]:
    """The train line's compact throughput, label -> value: achieved FLOP/s of all ranks
    ('3.20G') and, where the device's peak is known, MFU ('41.3%')."""
    from engine.analysis import format_count
    parts = {}
    if record.get("perf/achieved_gflops"):
        parts["FLOP/s"] = format_count(record["perf/achieved_gflops"] * 1e9)
    if "perf/mfu" in record:
        parts["MFU"] = f"{record['perf/mfu']:.1%}"
    return parts


#: How many headline metrics an eval line shows; the rest are in metrics.jsonl and TensorBoard.
CONSOLE_HEADLINES = 6


def headline(record: Mapping[str, Any]) -> tuple[dict[str, float], int]:
    """The metrics an eval line shows (names without a '/' breakdown), and how many it leaves out."""
    values = {k: v for k, v in record.items() if k not in ("step", "split")}
    top = {k: v for k, v in values.items() if "/" not in k} or values  # all broken down: show the parts
    shown = dict(list(top.items())[:CONSOLE_HEADLINES])
    return shown, len(values) - len(shown)


def breakdown_table(record: Mapping[str, Any]) -> str:
    """Metrics broken down by a '/' suffix (per level, per hop count, per rank) as a table: one row
    per suffix, one column per metric; empty when nothing is broken down."""
    rows: dict[str, dict[str, float]] = {}
    columns: list[str] = []
    for name, value in record.items():
        if "/" not in name or name in ("step", "split"):
            continue
        metric, part = name.split("/", 1)
        rows.setdefault(part, {})[metric] = value
        if metric not in columns:
            columns.append(metric)
    if not rows:
        return ""
    width = max(len(part) for part in rows)
    widths = [max(len(c), 10) for c in columns]
    lines = ["  " + " " * width + "".join(f"  {c:>{w}}" for c, w in zip(columns, widths))]
    for part, values in rows.items():
        cells = "".join(f"  {format_metric(c, values[c]) if c in values else '-':>{w}}"
                        for c, w in zip(columns, widths))
        lines.append(f"  {part:<{width}}{cells}")
    return "\n".join(lines)


def _quiet_storage_errors_in_threads() -> None:
    """TensorBoard writes from a thread; on a full disk the thread dies and the main thread
    re-raises its error at the next flush (launch/run.py prints that in one line, exit code 3).
    The thread's own traceback would only repeat it, so it is left out."""
    previous = threading.excepthook

    def hook(args) -> None:
        if storage_cause(args.exc_value) is None:
            previous(args)

    threading.excepthook = hook


_quiet_storage_errors_in_threads()


class RunLogger:
    """Writes metrics for one run; every method is a no-op where `enabled` is False (rank > 0)."""

    def __init__(self, workdir: str, *, enabled: bool, total_steps: int, start_step: int,
                 name: str = "", console_metrics: tuple[str, ...] = ("loss",)) -> None:
        self.enabled = enabled
        self.workdir = workdir
        self.total_steps = total_steps
        self.start_step = start_step
        self.name = name
        self.console_metrics = console_metrics
        self.writer = None
        self.bar = None
        self._started = time.perf_counter()
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self.metrics_path = os.path.join(workdir, METRICS_FILE)
        truncate_metrics(self.metrics_path, start_step)
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(os.path.join(workdir, TB_DIR), max_queue=100,
                                    purge_step=start_step + 1 if start_step > 0 else None)
        if sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=start_step, desc=name or "train",
                            dynamic_ncols=True, leave=True)

    # --- text ------------------------------------------------------------------------------
    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)
            self.writer.flush()

    def info(self, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(message)
        else:
            print(message, flush=True)

    # --- metrics ---------------------------------------------------------------------------
    def log(self, step: int, split: str, metrics: Mapping[str, Any]) -> None:
        """Write scalars and summaries of `split` ('train', 'eval/<name>', ...) at `step`."""
        if not self.enabled:
            return
        record = {"step": step, "split": split}
        for name, value in metrics.items():
            tag = f"{split}/{name}"
            if _is_scalar(value):
                value = float(value)
                record[name] = value
                self.writer.add_scalar(tag, value, step)
            elif summaries.is_summary(value):
                self._write_summary(tag, value, step)
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.writer.flush()
        if split == "train":
            self._console_train(step, record)
        else:
            shown, left_out = headline(record)
            text = " | ".join(f"{k} {format_metric(k, v)}" for k, v in shown.items())
            more = f" (+{left_out} more in metrics.jsonl)" if left_out else ""
            self.info(f"[{split}] step {step}: {text}{more}")

    def start(self, *, model: str, parameters: int, task: str, strategy: str, world_size: int) -> None:
        """One line saying what trains where, before the first step."""
        from engine.analysis import format_count
        self.info(f"run {self.workdir}: {model} ({format_count(parameters)} parameters) on {task}, "
                  f"{strategy} x {world_size} rank(s), steps {self.start_step}->{self.total_steps}")

    def summary(self, step: int, metrics: Mapping[str, Mapping[str, Any]]) -> None:
        """At the end: how far the run got, each split's headline metrics and breakdown table,
        and where to look next."""
        if not self.enabled:
            return
        elapsed = _format_duration(time.perf_counter() - self._started)
        lines = [f"done: step {step}/{self.total_steps} in {elapsed}"]
        for split, values in metrics.items():
            scalars = {k: float(v) for k, v in values.items() if _is_scalar(v)}
            shown, _ = headline(scalars)
            if shown:
                lines.append(f"  {split}: " + " | ".join(f"{k} {format_metric(k, v)}" for k, v in shown.items()))
            table = breakdown_table(scalars)
            if table:
                lines.append(table)
        lines.append(f"next: tensorboard --logdir {os.path.join(self.workdir, TB_DIR)}  "
                     f"(every metric: {self.metrics_path})")
        self.info("\n".join(lines))

    def _write_summary(self, tag: str, value: Any, step: int) -> None:
        if isinstance(value, summaries.Image):
            self.writer.add_image(tag, value.as_hwc_float(), step, dataformats="HWC")
        elif isinstance(value, summaries.Figure):
            self.writer.add_figure(tag, value.figure, step, close=True)
        elif isinstance(value, summaries.Text):
            self.writer.add_text(tag, value.text, step)
        elif isinstance(value, summaries.Video):
            frames = np.asarray(value.frames, dtype=np.float32)
            strip = summaries.image_grid(frames, columns=len(frames))
            self.writer.add_image(tag, strip, step, dataformats="HWC")

    def _console_train(self, step: int, record: dict) -> None:
        shown = {k: record[k] for k in self.console_metrics if k in record}
        rate = record.get("examples_per_s")
        perf = _format_perf(record)
        if self.bar is not None:
            self.bar.set_postfix({**{k: _format_value(v) for k, v in shown.items()},
                                  **({"ex/s": f"{rate:.0f}"} if rate else {}),
                                  **perf}, refresh=False)
            return
        elapsed = time.perf_counter() - self._started
        done = step - self.start_step
        eta = elapsed / done * (self.total_steps - step) if done > 0 else float("nan")
        parts = [f"step {step}/{self.total_steps}"]
        parts += [f"{k} {_format_value(v)}" for k, v in shown.items()]
        if "lr" in record:
            parts.append(f"lr {record['lr']:.2e}")
        if rate:
            parts.append(f"{rate:.0f} ex/s")
        parts += [f"{value} {label}" for label, value in perf.items()]
        parts.append(f"eta {_format_duration(eta)}")
        self.info(" | ".join(parts))

    def advance(self, steps: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def hparams(self, hparams: Mapping[str, Any], final_metrics: Mapping[str, Any]) -> None:
        """Record the run's hyperparameters beside its final metrics (TensorBoard HPARAMS tab)."""
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary
        clean_h = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        clean_m = {f"final/{k}": float(v) for k, v in final_metrics.items() if _is_scalar(v)}
        if not clean_m:
            return
        experiment, session_start, session_end = hparams_summary(clean_h, clean_m)
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)
        for name, value in clean_m.items():
            self.writer.add_scalar(name, value, self.total_steps)
        self.writer.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
