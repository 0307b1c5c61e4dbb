"""Diffusion Probabilistic Fields (Zhuang et al., ICLR 2023) as a task: fields are sets of
coordinate-signal pairs; each training step noises a context subset and a query subset of the
same field with one noise tensor and regresses the noise at the queries only.

Evaluation samples whole fields on any grid (a fixed subset of the queries serves as context,
refreshed from the current noisy values at every step), scores them in the feature space of a
classifier trained on the data, and draws them at the training resolution and an unseen one.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import gin
import numpy as np
import torch
import torch.nn.functional as F

from engine import summaries
from engine.data import Shard, batch_rng, device_of, generated_batches, unwrap
from engine.errors import require, require_int
from engine.task import Task
from tasks.common.diffusion import DDIMSampler, GaussianDiffusion, Sampler, classifier_free_guidance, drop_condition
from tasks.common import generative_metrics as gm
from tasks.fields.features import train_feature_net
from tasks.fields.sources.base import FieldSource
from tasks.common.gaussian_baseline import fitted_gaussian_draws


@gin.configurable
class FieldDiffusion(Task):
    """DPF training and evaluation on the fields of `source`.

    `context_points` / `query_points`: pairs per field per training step (independent random
    subsets, so a point may be in both, with the same noise). `eval_samples`: fields sampled per
    evaluation at the training resolution for the metrics; `grid_fields` of them are drawn at
    each of `eval_resolutions` (default: the training one and one never seen in training).
    With `conditional`, labels condition the model, are dropped with `condition_dropout` in
    training, and sampling uses classifier-free guidance with weight `guidance_scale`.
    """

    def __init__(self, *, source: FieldSource = gin.REQUIRED, diffusion: GaussianDiffusion | None = None,
                 sampler: Sampler | None = None, context_points: int = 128, query_points: int = 128,
                 sample_context_points: int | None = None, eval_batches: int = 4, eval_samples: int = 64,
                 eval_resolutions: Sequence[int] | None = None, grid_fields: int = 16, sample_batch: int = 64,
                 query_chunk: int = 4096, conditional: bool = False, condition_dropout: float = 0.1,
                 guidance_scale: float = 0.0, feature_steps: int = 400) -> None:
        require(isinstance(source, FieldSource), f"FieldDiffusion.source must be a field source such as "
                f"@ShapeFields(), got {source!r}")
        self.source = source
        self.diffusion = diffusion or GaussianDiffusion()
        self.sampler = sampler or DDIMSampler()
        points = len(source.coordinates(source.train_resolution))
        for name, value in (("context_points", context_points), ("query_points", query_points)):
            require_int(value, f"FieldDiffusion.{name}", low=1)
            require(value <= points, f"FieldDiffusion.{name} = {value} exceeds the {points} points of a "
                    f"training field ({type(source).__name__} at resolution {source.train_resolution})")
        self.context_points, self.query_points = context_points, query_points
        self.sample_context_points = require_int(sample_context_points or context_points,
                                                 "FieldDiffusion.sample_context_points", low=1)
        self.eval_batches = require_int(eval_batches, "FieldDiffusion.eval_batches", low=0)
        self.eval_samples = require_int(eval_samples, "FieldDiffusion.eval_samples", low=0)
        require(self.eval_samples == 0 or self.eval_samples >= 8,
                f"FieldDiffusion.eval_samples must be 0 (no sampling) or >= 8 for the metrics, got {eval_samples}")
        self.eval_resolutions = tuple(source.check_resolution(r) for r in
                                      (eval_resolutions or source.default_eval_resolutions()))
        self.grid_fields = require_int(grid_fields, "FieldDiffusion.grid_fields", low=0)
        self.sample_batch = require_int(sample_batch, "FieldDiffusion.sample_batch", low=1)
        self.query_chunk = require_int(query_chunk, "FieldDiffusion.query_chunk", low=1)
        require(0.0 <= condition_dropout <= 1.0, f"FieldDiffusion.condition_dropout must be in [0, 1], "
                f"got {condition_dropout!r}")
        require(conditional or guidance_scale == 0, "FieldDiffusion.guidance_scale needs conditional = True")
        self.conditional, self.condition_dropout, self.guidance_scale = conditional, condition_dropout, guidance_scale
        self.feature_steps = require_int(feature_steps, "FieldDiffusion.feature_steps", low=1)

    # --- data ---------------------------------------------------------------------------------
    def coordinates(self, resolution: int) -> np.ndarray:
        return self.source.coordinates(resolution)

    def _make_batch(self, split: str):
        pool = self.source.pool(split)
        coords = self.coordinates(self.source.train_resolution)
        points, channels = pool.values.shape[1:]

        def subset(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
            return np.argsort(rng.random((size, points)), axis=1)[:, :count]

        def make(rng: np.random.Generator, size: int, index: int) -> dict[str, np.ndarray]:
            fields = rng.integers(0, len(pool), size=size)
            values = pool.values[fields]
            # One noise tensor per field: a point drawn as context and as query gets the same noise.
            noise = rng.standard_normal(values.shape, dtype=np.float32)
            batch = {"t": rng.integers(0, self.diffusion.num_steps, size=size), "label": pool.labels[fields]}
            for role, count in (("context", self.context_points), ("query", self.query_points)):
                where = subset(rng, size, count)
                batch[f"{role}_coords"] = coords[where]
                batch[f"{role}_values"] = np.take_along_axis(values, where[..., None], axis=1)
                batch[f"{role}_noise"] = np.take_along_axis(noise, where[..., None], axis=1)
            return batch

        return make

    def batches(self, split: str, shard: Shard):
        return generated_batches(self._make_batch(self.source.check_split(split)), split, shard)

    # --- objective ------------------------------------------------------------------------------
    @property
    def null_label(self) -> int:
        return self.source.num_classes

    def loss(self, model, batch):
        t = batch["t"]
        diffusion = self.diffusion
        context = diffusion.q_sample(batch["context_values"], t, batch["context_noise"])
        queries = diffusion.q_sample(batch["query_values"], t, batch["query_noise"])
        labels = None
        if self.conditional:
            labels = batch["label"]
            if model.training:
                labels = drop_condition(labels, self.null_label, self.condition_dropout)
        output = model(batch["context_coords"], context, batch["query_coords"], queries, t, labels)["prediction"]
        target = diffusion.target(batch["query_values"], t, batch["query_noise"])
        return F.mse_loss(output.float(), target.float()), {}

    # --- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, model: torch.nn.Module, count: int, resolution: int, generator: torch.Generator,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """`count` fields on the query grid of `resolution`: (count, points, channels), raw.

        Per group of `sample_batch` fields, `sample_context_points` of the queries are chosen
        once as the context; at each step their values are the current noisy query values.
        """
        device = device_of(model)
        coords = torch.as_tensor(self.coordinates(resolution), device=device)
        points, channels = len(coords), self.source.signal_dim
        out = []
        for start in range(0, count, self.sample_batch):
            size = min(self.sample_batch, count - start)
            chosen = torch.randperm(points, generator=generator)[:min(self.sample_context_points, points)].to(device)
            context_coords, query_coords = coords[chosen].expand(size, -1, -1), coords.expand(size, -1, -1)

            def denoise(x_t, t, condition=None):
                batch = len(x_t)
                return model(context_coords[:1].expand(batch, -1, -1), x_t[:, chosen],
                             query_coords[:1].expand(batch, -1, -1), x_t, t, condition,
                             chunk=self.query_chunk)["prediction"]

            if self.conditional:
                group = labels[start:start + size].to(device)
                denoiser = classifier_free_guidance(denoise, group, self.null_label, self.guidance_scale)
            else:
                denoiser = denoise
            x_T = torch.randn(size, points, channels, generator=generator).to(device)
            out.append(self.sampler(self.diffusion, denoiser, x_T, generator=generator).float().cpu())
        return torch.cat(out)

    def balanced_labels(self, count: int) -> torch.Tensor | None:
        return torch.arange(count) % self.source.num_classes if self.conditional else None

    # --- metrics ----------------------------------------------------------------------------------
    def feature_net(self):
        return train_feature_net(self.source, steps=self.feature_steps)

    def score(self, samples: np.ndarray, split: str = "eval", labels: np.ndarray | None = None) -> dict[str, float]:
        """Metrics of finalized samples at the training resolution against `split`'s fields."""
        source, net = self.source, self.feature_net()
        reference = source.pool(split)
        n = min(len(samples), len(reference))
        ref_features, ref_classes = net.embed(source.feature_input(reference.values))
        features, classes = net.embed(source.feature_input(samples))
        # A fixed, data-defined scale. The floor keeps features that (nearly) never fire on the data
        # from blowing up a sample's distance when they do fire on it.
        mean, std = ref_features.mean(0), ref_features.std(0)
        std = np.maximum(std, 1e-2 * std.mean() + 1e-8)
        ref_features, features = (ref_features - mean) / std, (features - mean) / std
        precision, recall = gm.precision_recall(ref_features[:n], features[:n])
        train_values = source.pool("train").values
        novelty = gm.nearest_distance(samples, train_values).mean()
        held_out_novelty = gm.nearest_distance(reference.values[:n], train_values).mean()
        metrics = {"kid": gm.kernel_inception_distance(ref_features, features), "precision": precision,
                   "recall": recall, "class_tv": gm.class_histogram_distance(classes, ref_classes, source.num_classes),
                   "nn_train": float(novelty), "nn_train_ratio": float(novelty / held_out_novelty)}
        if labels is not None:
            metrics["label_accuracy"] = float((classes == np.asarray(labels)).mean())
        clouds = source.point_clouds(samples[:n], source.train_resolution)
        if clouds is not None:
            ref_clouds = source.point_clouds(reference.values[:n], source.train_resolution)
            coverage, mmd = gm.coverage_and_mmd(gm.subsample_points(clouds, 512), gm.subsample_points(ref_clouds, 512))
            metrics.update(cov=coverage, mmd=mmd)
        return metrics

    def gaussian_samples(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """The baseline: draws from N(mean, covariance) of the training fields, finalized."""
        values = self.source.pool("train").values
        draws = fitted_gaussian_draws(values, count, rng)
        return self.source.finalize(draws.reshape(count, *values.shape[1:]).astype(np.float32))

    def holdout_samples(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """The oracle: `count` held-out fields (never trained on, never scored against) as samples."""
        pool = self.source.pool("holdout").values
        require(count <= len(pool), f"{count} oracle samples need as many holdout fields, got {len(pool)}: "
                f"raise {type(self.source).__name__}.holdout_fields")
        return pool[np.sort(rng.choice(len(pool), size=count, replace=False))]

    def method_samples(self, method: str, model: torch.nn.Module | None, count: int, seed: int) -> np.ndarray:
        """`count` finalized fields at the training resolution from `method`: 'dpf' (the model's
        samples), 'gaussian' (the fitted Gaussian) or 'oracle' (held-out fields); one seed, one draw."""
        rng = np.random.default_rng(seed)
        if method == "gaussian":
            return self.gaussian_samples(count, rng)
        if method == "oracle":
            return self.holdout_samples(count, rng)
        require(method == "dpf" and model is not None, f"unknown field method {method!r} (or no model to sample)")
        generator = torch.Generator().manual_seed(seed)
        raw = self.sample(model, count, self.source.train_resolution, generator, self.balanced_labels(count))
        return self.source.finalize(raw.numpy())

    # --- evaluation -------------------------------------------------------------------------------
    def evaluate(self, model, split, shard):
        metrics = super().evaluate(model, split, shard) if self.eval_batches else {}
        if not self.eval_samples:
            return metrics
        # Each rank samples its share with its own stream; the engine averages the ranks' metrics.
        count = math.ceil(self.eval_samples / shard.world_size)
        seed = int(batch_rng(shard.seed, f"samples/{split}", shard.rank).integers(2 ** 62))
        generator = torch.Generator().manual_seed(seed)
        labels = self.balanced_labels(count)
        raw = self.sample(model, count, self.source.train_resolution, generator, labels)
        samples = self.source.finalize(raw.numpy())
        metrics.update(self.score(samples, split, None if labels is None else labels.numpy()))
        if shard.rank == 0 and self.grid_fields:  # pictures come from rank 0's samples only
            # The plain module: a wrapper's forward may be collective (DDP's buffer broadcast), and
            # only rank 0 draws these; during evaluation the strategy holds its whole weights.
            metrics.update(self.pictures(unwrap(model), samples, split, generator))
        return metrics

    def pictures(self, model, samples: np.ndarray, split: str, generator: torch.Generator) -> dict[str, Any]:
        """Sample grids at every eval resolution (reusing the training-resolution samples) and data."""
        source, n = self.source, self.grid_fields
        out = {}
        for resolution in self.eval_resolutions:
            if resolution == source.train_resolution and len(samples) >= n:
                fields = samples[:n]
            else:
                labels = self.balanced_labels(n)
                fields = source.finalize(self.sample(model, n, resolution, generator, labels).numpy())
            unseen = "" if resolution == source.train_resolution else "_unseen"
            out[f"samples_{source.describe(resolution)}{unseen}"] = summaries.Image(
                summaries.image_grid(source.render(fields, resolution)))
        reference = source.pool(split).values[:n]
        out[f"data_{source.describe(source.train_resolution)}"] = summaries.Image(
            summaries.image_grid(source.render(reference, source.train_resolution)))
        return out
