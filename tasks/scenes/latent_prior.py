"""GAUDI stage 2 as a task: a DDPM prior over the standardised per-trajectory latents of a trained
auto-decoder, unconditional or conditioned on a scene category with classifier-free guidance.

Evaluation samples latents, decodes each into a radiance field and a camera path with the frozen
stage-1 decoder, renders the frames along the path, and scores them: KID against the real frames
in a frame classifier's feature space, whether the sampled cameras stand inside a closed room,
how smooth the paths are, how far samples sit from the training latents, and (conditional) how
often the frames show the asked category. `draw_from` scores, with the same code, the training
latents themselves or a Gaussian fitted to them instead of the prior: the references that bound it
from above and below. `draws` independent sample sets are scored per evaluation (each metric is
their mean; every draw's value is logged as `draw_<k>/<metric>`).
"""
from __future__ import annotations

import functools
import math
from typing import Any

import gin
import numpy as np
import torch

from engine import summaries
from engine.data import batch_rng, device_of, frozen, unwrap
from engine.errors import require
from tasks.common.diffusion import GaussianDiffusion, Sampler
from tasks.common import generative_metrics as gm
from tasks.scenes.frame_features import train_frame_classifier
from tasks.common.latent_diffusion import LatentDiffusion
from tasks.scenes.autodecoding import frame_strip
from tasks.scenes.metrics import clear_path, enclosed, fraction, path_steps, seen_directions
from tasks.scenes.trajectories import SceneTrajectories


DRAW_FROM = ("prior", "training_latents", "gaussian")


def enclosure_directions(scenes: Any) -> torch.Tensor:
    """The enclosure test's directions for scenes (a SceneTrajectories): those its training views
    reach (`seen_directions`)."""
    return seen_directions(torch.as_tensor(scenes.quaternions), torch.as_tensor(scenes.intrinsics)[:, None],
                           scenes.height, scenes.width)


@gin.configurable
class LatentPrior(LatentDiffusion):
    """A diffusion prior on `latents` (N, D) of the frozen GAUDI `decoder` trained on `scenes`.

    `condition`: None (unconditional) or a label name of the scenes, e.g. 'floor'; the label is
    replaced by the null class with `condition_dropout` in training, and sampling mixes
    conditional and unconditional predictions with `guidance_scale`. `eval_samples` latents are
    sampled per evaluation, in each of `draws` sets; `feature_label` is what the frame classifier
    for KID learns (None: which trajectory a frame comes from). `draw_from`: 'prior' (the model's
    samples), 'training_latents' (a random `eval_samples` of them, with their true labels) or
    'gaussian' (N(mean, covariance) of the latents): the references, scored like the prior.
    """

    def __init__(self, *, latents: np.ndarray, decoder: torch.nn.Module, scenes: SceneTrajectories,
                 diffusion: GaussianDiffusion | None = None, sampler: Sampler | None = None,
                 condition: str | None = None, condition_dropout: float = 0.1, guidance_scale: float = 1.0,
                 eval_batches: int = 4, eval_samples: int = 32, strip_samples: int = 4, video_frames: int = 16,
                 interpolation_steps: int = 8, feature_label: str | None = "floor", feature_steps: int = 300,
                 draws: int = 1, draw_from: str = "prior") -> None:
        require(len(latents) == len(scenes), f"LatentPrior needs one latent per trajectory: got {len(latents)} "
                f"latents for {len(scenes)} trajectories")
        require(eval_samples == 0 or eval_samples >= 4,
                f"LatentPrior.eval_samples must be 0 (no sampling) or >= 4 for the metrics, got {eval_samples!r}")
        require(draw_from in DRAW_FROM, f"LatentPrior.draw_from must be one of {DRAW_FROM}, got {draw_from!r}")
        require(isinstance(draws, int) and draws >= 1, f"LatentPrior.draws must be an integer >= 1, got {draws!r}")
        labels = None if condition is None else scenes.label(condition)
        super().__init__(latents=latents, labels=labels, num_classes=0 if condition is None else scenes.num_classes[condition],
                         diffusion=diffusion, sampler=sampler, condition_dropout=condition_dropout,
                         guidance_scale=guidance_scale, eval_batches=eval_batches)
        self.scenes, self.decoder = scenes, frozen(decoder)
        self.condition = condition
        self.eval_samples, self.strip_samples = eval_samples, strip_samples
        self.video_frames, self.interpolation_steps = video_frames, interpolation_steps
        self.feature_label, self.feature_steps = feature_label, feature_steps
        self.draws, self.draw_from = draws, draw_from

    @torch.no_grad()
    def render(self, latents: torch.Tensor, times: np.ndarray | None = None, chunk: int = 8) -> dict[str, torch.Tensor]:
        """Frames (n, F, H, W, 3) along each latent's decoded camera path, the path, the
        enclosure test of every camera (n, F) and whether each path's walk is free space (n,)."""
        scenes, decoder = self.scenes, unwrap(self.decoder)
        times = scenes.times[0] if times is None else times
        device = device_of(decoder)
        parts = []
        for z in latents.split(chunk):
            z = z.to(device)
            count = len(z)
            out = decoder.render_frames(z, torch.as_tensor(times, device=device).expand(count, -1),
                                        torch.as_tensor(scenes.intrinsics[0], device=device).expand(count, 3),
                                        scenes.height, scenes.width)
            out["inside"] = enclosed(decoder.render_rays, out["planes"], out["translation"],
                                     directions=self.enclosure_directions)
            out["clear"] = clear_path(decoder.field, out["planes"], out["translation"])
            parts.append({k: out[k].cpu() for k in ("rgb", "quaternion", "translation", "inside", "clear")})
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    @functools.cached_property
    def enclosure_directions(self) -> torch.Tensor:
        return enclosure_directions(self.scenes)

    # --- metrics ---------------------------------------------------------------------------------
    def classifier(self):
        return train_frame_classifier(self.scenes, self.feature_label, steps=self.feature_steps)

    def score(self, latents: torch.Tensor, labels: np.ndarray | None = None,
              rendered: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """Metrics of scenes decoded from `latents` (n, D), in the auto-decoder's space;
        `rendered` is `render(latents)` where the caller already has it."""
        scenes, data = self.scenes, self._data_statistics
        rendered = self.render(latents) if rendered is None else rendered
        frames = rendered["rgb"].numpy().reshape(-1, scenes.height, scenes.width, 3)
        features, classes = self.classifier().embed(frames)
        paths = path_steps(rendered["quaternion"], rendered["translation"])
        normalised = ((latents.numpy() - self.mean) / self.std)
        # Memorisation in what a viewer sees: a sample's frames against the nearest training
        # trajectory's real frames, over how far real training trajectories lie from each other.
        flat = rendered["rgb"].numpy().reshape(len(latents), -1)
        metrics = {"kid": gm.kernel_inception_distance(data["real_features"], (features - data["mean"]) / data["std"]),
                   "inside_room": fraction(rendered["inside"]), "clear_path": fraction(rendered["clear"]),
                   "step_ratio": float(paths["step"].mean() / data["step"]),
                   "turn_ratio": float(paths["turn"].mean() / data["turn"]),
                   "position_jerk": float(paths["position_jerk"].mean()), "turn_jerk_deg": float(paths["turn_jerk"].mean()),
                   "nn_train_ratio": float(gm.nearest_distance(normalised, self.normalised).mean() / data["spread"]),
                   "nn_train_frames_ratio": float(gm.nearest_distance(flat, data["real_frames"]).mean()
                                                  / data["frame_spread"])}
        if labels is not None:
            metrics["label_accuracy"] = float((classes == np.repeat(labels, scenes.frames)).mean())
        return metrics

    @functools.cached_property
    def _data_statistics(self) -> dict[str, Any]:
        """What score compares samples with, fixed by the data: computed on the first score only.

        The real frames' classifier features (standardised by their own mean and std, a fixed,
        data-defined scale), the real paths' mean step and turn, and how far apart the training
        latents themselves lie (nearest other latent)."""
        scenes = self.scenes
        real_features, _ = self.classifier().embed(scenes.rgb.reshape(-1, scenes.height, scenes.width, 3))
        mean, std = real_features.mean(0), real_features.std(0) + 1e-6
        real = path_steps(torch.as_tensor(scenes.quaternions), torch.as_tensor(scenes.translations))
        real_frames = scenes.rgb.reshape(len(scenes), -1).astype(np.float64)
        return {"real_features": (real_features - mean) / std, "mean": mean, "std": std,
                "step": real["step"].mean(), "turn": real["turn"].mean(), "spread": _leave_one_out(self.normalised),
                "real_frames": real_frames, "frame_spread": _leave_one_out(real_frames)}

    def draw(self, model, count: int, generator: torch.Generator) -> tuple[torch.Tensor, np.ndarray | None]:
        """One set of `count` latents from `draw_from`, and the labels they stand for (None when
        unconditional; the true labels of training latents when there are labels)."""
        if self.draw_from == "prior":
            labels = self.balanced_labels(count)
            return self.sample(model, count, generator, labels), None if labels is None else labels.numpy()
        if self.draw_from == "gaussian":
            return self.gaussian_fit(count, int(torch.randint(2 ** 62, (1,), generator=generator))), None
        chosen = torch.randperm(len(self.normalised), generator=generator)[:count].numpy()
        latents = torch.as_tensor((self.normalised[chosen] * self.std + self.mean).astype(np.float32))
        return latents, self.labels[chosen] if self.num_classes else None

    def evaluate(self, model, split, shard):
        metrics: dict[str, Any] = super().evaluate(model, split, shard) if self.eval_batches else {}
        if not self.eval_samples:
            return metrics
        count = math.ceil(self.eval_samples / shard.world_size)  # each rank its share, its own stream
        seed = int(batch_rng(shard.seed, f"samples/{split}", shard.rank).integers(2 ** 62))
        generator = torch.Generator().manual_seed(seed)
        scores: dict[str, list[float]] = {}
        for k in range(self.draws):
            drawn, labels = self.draw(model, count, generator)
            rendered_k = self.render(drawn)
            for name, value in self.score(drawn, labels, rendered_k).items():
                scores.setdefault(name, []).append(value)
                metrics[f"draw_{k}/{name}"] = value
            if k == 0:
                latents, rendered = drawn, rendered_k
        metrics.update({name: float(np.mean(values)) for name, values in scores.items()})
        if shard.rank == 0 and self.strip_samples:
            metrics.update(self.pictures(latents[:self.strip_samples], rendered["rgb"][:self.strip_samples]))
        return metrics

    # --- pictures --------------------------------------------------------------------------------
    def pictures(self, latents: torch.Tensor, frames: torch.Tensor) -> dict[str, Any]:
        """A fly-through video (written as a strip) per sample along its decoded path, at
        `video_frames` times (finer than the training frames), a strip of `frames` (the samples
        rendered at the training times, as `score` saw them) and a latent interpolation strip."""
        out: dict[str, Any] = {}
        fine = np.linspace(-1, 1, self.video_frames).astype(np.float32)
        flights = self.render(latents, fine)["rgb"].numpy()
        for k, flight in enumerate(flights):
            out[f"flythrough_{k}"] = summaries.Video(flight)
        out["samples"] = frame_strip(list(frames.numpy()))
        if self.interpolation_steps >= 2:
            out["interpolation"] = self.interpolation()
        return out

    def interpolation(self, first: int = 0, second: int | None = None) -> summaries.Image:
        """Rows: the frames at s = -1, 0, 1 of scenes decoded from (1 - a) z_i + a z_j, a from 0 to 1."""
        second = len(self.normalised) // 2 if second is None else second
        weights = torch.linspace(0, 1, self.interpolation_steps)[:, None]
        z = torch.as_tensor(self.normalised[[first, second]] * self.std + self.mean)
        latents = (1 - weights) * z[0] + weights * z[1]
        rgb = self.render(latents, np.array([-1.0, 0.0, 1.0], dtype=np.float32))["rgb"].numpy()
        return frame_strip(list(rgb.transpose(1, 0, 2, 3, 4)))


def _leave_one_out(points: np.ndarray) -> float:
    """Mean distance from each point to its nearest other point (RMS per coordinate, like gm)."""
    x = torch.as_tensor(points, dtype=torch.float64)
    distances = torch.cdist(x, x)
    distances.fill_diagonal_(float("inf"))
    return float(distances.min(dim=1).values.mean() / math.sqrt(x.shape[1]))
