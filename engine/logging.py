"""Run logging on rank 0: TensorBoard, `metrics.jsonl` and the console (progress bar or lines).

A resumed run first drops the records (and TensorBoard events) written after the step it
resumes from, so the logs read as if the run had never been interrupted.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any, Mapping

import numpy as np

from engine import summaries
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
            shown = " | ".join(f"{k} {_format_value(v)}" for k, v in record.items()
                               if k not in ("step", "split"))
            self.info(f"[{split}] step {step}: {shown}")

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
        if self.bar is not None:
            self.bar.set_postfix({**{k: _format_value(v) for k, v in shown.items()},
                                  **({"ex/s": f"{rate:.0f}"} if rate else {})}, refresh=False)
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
