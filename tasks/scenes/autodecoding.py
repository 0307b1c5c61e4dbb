"""GAUDI stage 1 as a task: auto-decode scene trajectories. Each step renders random pixels of
every frame of a batch of trajectories from their ground-truth cameras and decodes the cameras
from the trajectory's pose latent: L1 on RGB, L1 on depth and squared error on the pose.

Evaluation reconstructs whole frames of the training trajectories (the only split an
auto-decoder has): PSNR, depth L1, rotation and translation errors, and image strips.
"""
from __future__ import annotations

from typing import Any

import gin
import numpy as np
import torch
import torch.nn.functional as F

from engine import summaries
from engine.data import Shard, batch_rng, device_of, to_device, to_tensors, unwrap
from engine.errors import ConfigError, require, require_int, require_number
from engine.metrics import Ratio
from engine.task import Task
from models.layers.cameras import pixel_centres, quaternion_distance
from tasks.common.arrays import epoch_indices, ordered_batches
from tasks.scenes.metrics import pose_errors, psnr
from tasks.scenes.trajectories import SceneSource, SceneTrajectories

SPLIT = "train"


def frame_strip(rows: list[np.ndarray]) -> summaries.Image:
    """Rows of frames (F, H, W, 3) stacked into one image, a row per list entry."""
    frames = np.concatenate(rows)
    return summaries.Image(summaries.image_grid(frames, columns=rows[0].shape[0]))


def depth_as_rgb(depth: np.ndarray, far: float) -> np.ndarray:
    """Depth (..., H, W) as grey (..., H, W, 3): near is bright."""
    return np.repeat((1 - np.clip(depth / far, 0, 1))[..., None], 3, axis=-1)


@gin.configurable
class SceneAutoDecoding(Task):
    """Stage 1 of GAUDI on `scenes`: `train.batch_size` trajectories per step, all their frames,
    `rays_per_frame` random pixels per frame. Weights: RGB L1 `rgb_weight`, depth L1
    `depth_weight`, pose squared error (sign-invariant on the quaternion) `pose_weight`."""

    def __init__(self, *, scenes: SceneSource = gin.REQUIRED, rays_per_frame: int = 64, rgb_weight: float = 1.0,
                 depth_weight: float = 0.5, pose_weight: float = 1.0, eval_trajectories: int = 16,
                 strip_trajectories: int = 2) -> None:
        require(isinstance(scenes, SceneSource), f"SceneAutoDecoding.scenes must be a scene source such as "
                f"@ProceduralRooms(), got {scenes!r}")
        require_int(rays_per_frame, "SceneAutoDecoding.rays_per_frame", low=1)
        for name, value in (("rgb_weight", rgb_weight), ("depth_weight", depth_weight), ("pose_weight", pose_weight)):
            require_number(value, f"SceneAutoDecoding.{name}", low=0)
        self.source = scenes
        self.rays_per_frame = rays_per_frame
        self.rgb_weight, self.depth_weight, self.pose_weight = rgb_weight, depth_weight, pose_weight
        self.eval_trajectories, self.strip_trajectories = eval_trajectories, strip_trajectories
        self._checked = False

    @property
    def scenes(self) -> SceneTrajectories:
        return self.source.load()

    # --- data ------------------------------------------------------------------------------
    def _make_batch(self, size: int, index: int, seed: int) -> dict[str, np.ndarray]:
        scenes = self.scenes
        chosen = epoch_indices(len(scenes), seed, SPLIT, size, index)
        pixels_per_frame = scenes.height * scenes.width
        rng = batch_rng(seed, "train/rays", index)
        where = rng.integers(0, pixels_per_frame, size=(size, scenes.frames, self.rays_per_frame))
        frame = np.arange(scenes.frames)[None, :, None]
        rgb = scenes.rgb[chosen].reshape(size, scenes.frames, pixels_per_frame, 3)
        depth = scenes.depth[chosen].reshape(size, scenes.frames, pixels_per_frame)
        rows = np.arange(size)[:, None, None]
        return {"index": chosen, "times": scenes.times[chosen], "quaternions": scenes.quaternions[chosen],
                "translations": scenes.translations[chosen], "intrinsics": scenes.intrinsics[chosen],
                "pixels": pixel_centres(scenes.height, scenes.width).numpy()[where],
                "rgb": rgb[rows, frame, where], "depth": depth[rows, frame, where]}

    def batches(self, split: str, shard: Shard):
        if split != SPLIT:
            raise ConfigError(f"SceneAutoDecoding trains and evaluates on its training trajectories: "
                              f"use the split {SPLIT!r}, not {split!r} (train.eval_splits = ['{SPLIT}'])")
        index = shard.start
        while True:
            batch = self._make_batch(shard.batch_size, index, shard.seed)
            yield to_tensors({k: v[shard.local_slice] for k, v in batch.items()})
            index += 1

    # --- objective ---------------------------------------------------------------------------
    def _check_model(self, model: torch.nn.Module) -> None:
        if self._checked:
            return
        module, count = unwrap(model), len(self.scenes)
        latents = getattr(module, "num_scenes", None)
        if latents is not None and latents != count:
            raise ConfigError(f"the model has latents for {latents} trajectories but the scenes hold {count}: "
                              f"bind GAUDI.num_scenes = {count}")
        far = getattr(module, "far", None)
        deepest = float(self.scenes.depth.max())
        if far is not None and deepest > far:
            raise ConfigError(f"the scenes reach depth {deepest:.3f} beyond the renderer's far bound {far}: "
                              f"bind GAUDI.far >= {deepest * 1.05:.2f}")
        self._checked = True

    def loss(self, model, batch):
        self._check_model(model)
        out = model(batch["index"], batch["times"], batch["quaternions"], batch["translations"],
                    batch["intrinsics"], batch["pixels"])
        rgb_l1 = (out["rgb"] - batch["rgb"]).abs().mean()
        depth_l1 = (out["depth"] - batch["depth"]).abs().mean()
        rotation = quaternion_distance(out["quaternion"], batch["quaternions"]).pow(2)
        translation = (out["translation"] - batch["translations"]).pow(2).sum(-1)
        pose = (rotation + translation).mean()
        loss = self.rgb_weight * rgb_l1 + self.depth_weight * depth_l1 + self.pose_weight * pose
        metrics = {"rgb_l1": rgb_l1.detach(), "depth_l1": depth_l1.detach(), "pose_l2": pose.detach(),
                   "psnr": psnr(F.mse_loss(out["rgb"].detach(), batch["rgb"])), "latent_norm": out["latent_norm"]}
        return loss, metrics

    # --- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, model: torch.nn.Module, index: np.ndarray) -> dict[str, torch.Tensor]:
        """Whole frames of trajectories `index` rendered from their true cameras, and decoded poses."""
        module, scenes = unwrap(model), self.scenes
        device = device_of(module)
        tensors = to_device(to_tensors({"index": index, "times": scenes.times[index], "q": scenes.quaternions[index],
                                        "t": scenes.translations[index], "k": scenes.intrinsics[index]}), device)
        z = module.latent(tensors["index"])
        out = module.render_frames(z, tensors["times"], tensors["k"], scenes.height, scenes.width,
                                   tensors["q"], tensors["t"])
        out["quaternion"], out["translation"] = module.pose_decoder(module.split(z)[1], tensors["times"])
        return out

    def evaluate(self, model, split, shard):
        if split != SPLIT:
            raise ConfigError(f"SceneAutoDecoding evaluates reconstructions of its training trajectories: "
                              f"bind train.eval_splits = ['{SPLIT}'], not {split!r}")
        scenes = self.scenes
        count = min(self.eval_trajectories, len(scenes))
        totals = {k: Ratio(0.0, 0.0) for k in ("psnr", "depth_l1", "rotation_error_deg", "translation_error")}
        for batch in ordered_batches({"index": np.arange(count)}, shard.replace(batch_size=max(4, shard.world_size))):
            index = batch["index"].numpy()
            if len(index) == 0:
                continue
            out = self.reconstruct(model, index)
            true_rgb = torch.as_tensor(scenes.rgb[index])
            frame_mse = (out["rgb"].cpu() - true_rgb).pow(2).mean(dim=(-3, -2, -1))  # (B, F)
            angle, offset = pose_errors(out["quaternion"].cpu(), out["translation"].cpu(),
                                        torch.as_tensor(scenes.quaternions[index]),
                                        torch.as_tensor(scenes.translations[index]))
            depth = (out["depth"].cpu() - torch.as_tensor(scenes.depth[index])).abs().mean(dim=(-2, -1))
            frames = float(frame_mse.numel())
            for name, values in (("psnr", psnr(frame_mse)), ("depth_l1", depth), ("rotation_error_deg", angle),
                                 ("translation_error", offset)):
                totals[name] = totals[name] + Ratio(float(values.sum()), frames)
        metrics: dict[str, Any] = dict(totals)
        if shard.rank == 0 and self.strip_trajectories:
            metrics.update(self.pictures(model))
        return metrics

    def pictures(self, model: torch.nn.Module) -> dict[str, summaries.Image]:
        """Per shown trajectory: true frames, reconstructed frames, true depth, reconstructed depth."""
        scenes, far = self.scenes, float(getattr(unwrap(model), "far", self.scenes.depth.max()))
        index = np.arange(min(self.strip_trajectories, len(scenes)))
        out = self.reconstruct(model, index)
        rows = []
        for k, i in enumerate(index):
            rows += [scenes.rgb[i], out["rgb"][k].cpu().numpy(), depth_as_rgb(scenes.depth[i], far),
                     depth_as_rgb(out["depth"][k].cpu().numpy(), far)]
        return {"reconstruction": frame_strip(rows)}
