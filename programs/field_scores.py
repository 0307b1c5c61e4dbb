"""One program for every row of a field-generation table: DPF (trained here, sampled from its EMA
weights), a Gaussian fitted to the training fields, or held-out fields scored as if they were
samples (the oracle). Each draws `draws` independent sample sets and scores every one on each
split with the task's metrics and its one saved, frozen feature network.

    run.program = @scored_fields
    scored_fields.method = 'dpf'        # or 'gaussian', 'oracle' (nothing is trained)

Draw k of the run with train.seed s uses the sample seed (s, k), so the draws of two methods with
the same seed and index pair up, and no two seeds repeat a draw.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import gin
import numpy as np

from engine import config
from engine.errors import ConfigError, require_int
from engine.files import write_atomically
from engine.program import TrainResult, train
from tasks.fields.dpf import FieldDiffusion

METHODS = ("dpf", "gaussian", "oracle")
SCORES_FILE = "scores.json"
SAMPLES_FILE = "samples.npz"  # the first draw's first grid_fields fields (and DPF's at an unseen resolution)


@dataclasses.dataclass
class FieldScores:
    """What `scored_fields` returns: per split, each metric's mean over the draws, and every draw's
    value ('split/name' -> list); the training result for DPF (None otherwise)."""

    workdir: str
    finished: bool
    metrics: dict[str, dict[str, float]]
    draws: dict[str, list[float]]
    feature_net: dict[str, Any]
    trained: TrainResult | None = None
    report: str | None = None  # under a dry run (--print-config): what the run would do


def _sample_seed(seed: int, draw: int) -> int:
    return int(np.random.default_rng([seed, draw, 4099]).integers(2 ** 62))


@gin.configurable
def scored_fields(*, method: str = "dpf", draws: int = 5, splits: Sequence[str] = ("validation", "eval"),
                  workdir: str | None = None) -> FieldScores:
    """Train (DPF only), then draw and score `draws` sample sets of `FieldDiffusion.eval_samples`
    fields on every split in `splits`; writes scores.json and samples.npz into the run folder."""
    from engine.program import _DRY_RUN, _WORKDIR
    if method not in METHODS:
        raise ConfigError(f"scored_fields.method must be one of {METHODS}, got {method!r}")
    require_int(draws, "scored_fields.draws", low=1)
    task = config.built("train.task")
    if not isinstance(task, FieldDiffusion) or not task.eval_samples:
        raise ConfigError("scored_fields needs train.task = @FieldDiffusion() with FieldDiffusion.eval_samples > 0")
    workdir = workdir or _WORKDIR.get()
    seed = int(gin.query_parameter("train.seed"))
    trained, model = None, None
    plan = (f"scored_fields: method {method!r}, {draws} draw(s) of {task.eval_samples} fields, each scored on "
            f"{list(splits)}")
    if method == "dpf":
        trained = train()
        if trained.dry_run or not trained.finished:
            return FieldScores(workdir, False, {}, {}, {}, trained,
                               report=f"{trained.report}\n{plan}" if trained.dry_run else None)
        model = ema_model(trained)
    elif _DRY_RUN.get():  # the bed's dry-run report (task, model, strategy), though this method trains nothing
        return FieldScores(workdir, False, {}, {}, {}, None, report=f"{train().report}\n{plan}; nothing is trained")
    os.makedirs(workdir, exist_ok=True)
    net = task.feature_net()
    per_draw: dict[str, list[float]] = {}
    for draw in range(draws):
        fields = task.method_samples(method, model, task.eval_samples, _sample_seed(seed, draw))
        if draw == 0:
            save_samples(task, model, fields, os.path.join(workdir, SAMPLES_FILE), _sample_seed(seed, draws))
        for split in splits:
            for name, value in task.score(fields, split).items():
                per_draw.setdefault(f"{split}/{name}", []).append(float(value))
    metrics: dict[str, dict[str, float]] = {}
    for key, values in per_draw.items():
        split, name = key.split("/", 1)
        metrics.setdefault(split, {})[name] = float(np.mean(values))
    feature = {"sha256": net.digest, "validation_accuracy": net.accuracy, "path": net.path}
    write_atomically(os.path.join(workdir, SCORES_FILE),
                     json.dumps({"method": method, "seed": seed, "draws": per_draw, "feature_net": feature}, indent=1))
    return FieldScores(workdir, True, metrics, per_draw, feature, trained)


def ema_model(trained: TrainResult):
    """The trained model with its exponential-moving-average weights (`engine.ema`), else its own."""
    from safetensors.torch import load_file

    from engine.ema import EMA_FILE
    model = trained.frozen_model(from_checkpoint=False)
    path = os.path.join(trained.workdir, EMA_FILE)
    if os.path.exists(path):
        model.load_state_dict(load_file(path))
    return model


def save_samples(task: FieldDiffusion, model, fields: np.ndarray, path: str, seed: int) -> None:
    """The first `grid_fields` fields of a draw for pictures; for a model, also as many sampled at
    each other evaluation resolution (fields are resolution-free: one never seen in training)."""
    import torch
    count = task.grid_fields or 4
    arrays = {f"resolution_{task.source.train_resolution}": fields[:count]}
    if model is not None:
        generator = torch.Generator().manual_seed(seed)
        for resolution in task.eval_resolutions:
            if resolution != task.source.train_resolution:
                raw = task.sample(model, count, resolution, generator, task.balanced_labels(count))
                arrays[f"resolution_{resolution}"] = task.source.finalize(raw.numpy())
    with open(path + ".tmp", "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(path + ".tmp", path)
