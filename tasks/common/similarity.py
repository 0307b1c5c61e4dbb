"""Representational similarity between two models: linear CKA per pair of layers, and how often
their predictions agree. Used to ask whether a distilled student came to see inputs the way
its teacher does (Abnar et al. 2020; CKA as in Kornblith et al. 2019).

Both models must expose `features(*inputs)` -> {'layer_1': (n, d), ..., 'pre_logits': (n, d)}
(StagedModel, TransformerClassifier, LSTMClassifier do); inputs are whatever the task's loss
passes to the model, captured with a CallRecorder.
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from engine.data import Shard, device_of, to_device, unwrap
from engine.errors import ConfigError
from engine.metrics import Ratio
from engine.task import Task
from tasks.common.classification import logits_of
from tasks.common.recording import CallRecorder

_LAYER = re.compile(r"^layer_(\d+)$")


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations (n examples, any widths): 1 for identical ones,
    invariant to orthogonal transforms and isotropic scaling of either."""
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"CKA needs the same n >= 2 examples in both, got {x.shape[0]} and {y.shape[0]}")
    x = x.reshape(x.shape[0], -1).double()
    y = y.reshape(y.shape[0], -1).double()
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    # The feature-space form ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) of <XX^T, YY^T> / norms.
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norms = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norms) if float(norms) > 0 else float("nan")


def layer_names(features: Mapping[str, Any]) -> list[str]:
    """`layer_k` keys in depth order."""
    return sorted((k for k in features if _LAYER.match(k)), key=lambda k: int(_LAYER.match(k).group(1)))


def _features(model: torch.nn.Module, call) -> dict[str, torch.Tensor]:
    module = unwrap(model)
    if not callable(getattr(module, "features", None)):
        raise ConfigError(f"{type(module).__name__} has no features() method, so its layers cannot be "
                          "compared (StagedModel, TransformerClassifier and LSTMClassifier have one)")
    return module.features(*call.args, **call.kwargs)


@torch.no_grad()
def collect(model: torch.nn.Module, task: Task, batches: Iterable[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Per-layer features and logits of `model` over `batches`, concatenated (on the CPU)."""
    device = device_of(model)
    parts: dict[str, list[torch.Tensor]] = {}
    for batch in batches:
        recorder = CallRecorder(model)
        task.loss(recorder, to_device(batch, device))
        call = recorder.only_call("comparing representations")
        found = _features(model, call)
        found["logits"] = logits_of(call.output)
        for name, value in found.items():
            parts.setdefault(name, []).append(value.detach().float().cpu())
    return {name: torch.cat(values) for name, values in parts.items()}


def compare_features(student: Mapping[str, torch.Tensor], teacher: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Agreement of the top predictions, CKA of the penultimate representations, and CKA of
    every (student layer, teacher layer) pair."""
    agree = float((student["logits"].argmax(-1) == teacher["logits"].argmax(-1)).sum())
    metrics: dict[str, Any] = {"teacher_agreement": Ratio(agree, len(student["logits"])),
                               "cka/pre_logits": linear_cka(student["pre_logits"], teacher["pre_logits"])}
    for s in layer_names(student):
        for t in layer_names(teacher):
            metrics[f"cka/student_{s[6:]}_teacher_{t[6:]}"] = linear_cka(student[s], teacher[t])
    return metrics


def compare_models(student: torch.nn.Module, teacher: torch.nn.Module, task: Task, split: str,
                   shard: Shard, max_batches: int) -> dict[str, Any]:
    """`compare_features` over the first `max_batches` batches of `split` (this rank's share).

    CKA is computed over this rank's examples; under several ranks the engine averages the
    per-rank values (agreement is exact: a Ratio).
    """
    def batches():
        stream = task.batches(split, shard.replace(start=0))
        return (batch for _, batch in zip(range(max_batches), stream))

    return compare_features(collect(student, task, batches()), collect(teacher, task, batches()))


def cka_matrix(metrics: Mapping[str, Any]) -> tuple[np.ndarray, list[int], list[int]] | None:
    """The (student layer x teacher layer) CKA matrix from `compare_features`'s metrics."""
    pattern = re.compile(r"^cka/student_(\d+)_teacher_(\d+)$")
    pairs = {tuple(int(g) for g in m.groups()): float(v) for k, v in metrics.items() if (m := pattern.match(k))}
    if not pairs:
        return None
    rows = sorted({s for s, _ in pairs})
    columns = sorted({t for _, t in pairs})
    matrix = np.array([[pairs.get((s, t), np.nan) for t in columns] for s in rows])
    return matrix, rows, columns


def cka_figure(matrix: np.ndarray, rows: list[int], columns: list[int], title: str = ""):
    """A heatmap of a CKA matrix (a matplotlib figure; the caller closes or hands it on)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(1.2 + 0.7 * len(columns), 1.0 + 0.6 * len(rows)))
    image = axis.imshow(matrix, vmin=0, vmax=1, cmap="viridis", origin="lower")
    axis.set_xticks(range(len(columns)), [str(c) for c in columns])
    axis.set_yticks(range(len(rows)), [str(r) for r in rows])
    axis.set_xlabel("teacher layer")
    axis.set_ylabel("student layer")
    for i in range(len(rows)):
        for j in range(len(columns)):
            axis.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", color="white", fontsize=7)
    if title:
        axis.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.05)
    figure.tight_layout()
    return figure
