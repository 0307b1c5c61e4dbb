"""The GAUDI auto-decoder: a table of per-trajectory latents z = [z_scene, z_pose] (no encoder),
the scene decoder to a tri-plane, the radiance field, and the camera-pose decoder.

Training renders the ground-truth cameras' rays through the decoded scene and decodes the
poses at the frames' times; generation decodes any latent into a camera path and renders the
frames along it. In training mode the latents are perturbed by Gaussian noise of scale
`latent_noise` (the paper's latent regulariser): nearby latents must decode to similar scenes,
which gives the latent space the smoothness a prior can be learned on.
"""
from __future__ import annotations

import gin
import torch
from torch import nn

from engine.errors import require, require_int
from models.gaudi.decoders import PoseDecoder, SceneDecoder
from models.gaudi.radiance_field import RadianceField
from models.layers import camera_rays, pixel_centres, triplane


@gin.configurable
class GAUDI(nn.Module):
    """Latents for `num_scenes` trajectories, each `scene_dim` + `pose_dim` wide.

    The table stores z / `latent_scale`, so Adam moves the latents `latent_scale` times faster
    than the decoders' weights (auto-decoders want a higher latent learning rate) without a
    second optimizer. Rays are sampled with `samples_per_ray` bins over [near, far] (z-depth),
    stratified in training; the scene lives in the box [-bound, bound]^3 the tri-plane covers.
    """

    def __init__(self, *, num_scenes: int = gin.REQUIRED, scene_dim: int = 64, pose_dim: int = 16,
                 init_std: float = 0.01, latent_noise: float = 0.1, latent_scale: float = 10.0,
                 plane_resolution: int = 32, plane_channels: int = 16, decoder_channels: int = 32,
                 upsamplings: int = 2, aggregation: str = "sum", field_hidden: int = 64, field_layers: int = 2,
                 num_frequencies: int = 4, density_scale: float = 10.0, pose_hidden: int = 128, pose_layers: int = 2,
                 time_frequencies: int = 3, samples_per_ray: int = 32, near: float = 0.05, far: float = 2.2,
                 bound: float = 1.0, render_chunk: int = 4096) -> None:
        super().__init__()
        for name, value in (("num_scenes", num_scenes), ("scene_dim", scene_dim), ("pose_dim", pose_dim),
                            ("samples_per_ray", samples_per_ray), ("render_chunk", render_chunk)):
            require_int(value, f"GAUDI.{name}", low=1)
        require(0 <= near < far, f"GAUDI needs 0 <= near < far, got near={near}, far={far}")
        require(latent_noise >= 0 and latent_scale > 0 and init_std >= 0,
                f"GAUDI needs latent_noise >= 0, latent_scale > 0, init_std >= 0; got {latent_noise}, "
                f"{latent_scale}, {init_std}")
        triplane.aggregated_channels(plane_channels, aggregation)  # checks the name
        self.num_scenes, self.scene_dim, self.pose_dim = num_scenes, scene_dim, pose_dim
        self.latent_noise, self.latent_scale = float(latent_noise), float(latent_scale)
        self.samples_per_ray, self.near, self.far, self.render_chunk = samples_per_ray, near, far, render_chunk
        self.latent_table = nn.Parameter(torch.randn(num_scenes, scene_dim + pose_dim) * init_std / latent_scale)
        self.scene_decoder = SceneDecoder(scene_dim, resolution=plane_resolution, channels=plane_channels,
                                          base_channels=decoder_channels, upsamplings=upsamplings)
        self.field = RadianceField(plane_channels, aggregation=aggregation, hidden=field_hidden, layers=field_layers,
                                   num_frequencies=num_frequencies, bound=bound, density_scale=density_scale)
        self.pose_decoder = PoseDecoder(pose_dim, hidden=pose_hidden, layers=pose_layers,
                                        time_frequencies=time_frequencies)

    @property
    def latent_dim(self) -> int:
        return self.scene_dim + self.pose_dim

    def latents(self) -> torch.Tensor:
        """The clean latents of every trajectory, (num_scenes, latent_dim)."""
        return self.latent_table * self.latent_scale

    def latent(self, index: torch.Tensor) -> torch.Tensor:
        """Latents of trajectories `index`; perturbed by N(0, latent_noise^2) in training mode."""
        z = self.latent_table[index] * self.latent_scale
        if self.training and self.latent_noise > 0:
            z = z + self.latent_noise * torch.randn_like(z)
        return z

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z[..., :self.scene_dim], z[..., self.scene_dim:]

    # --- rendering -------------------------------------------------------------------------
    def render_rays(self, planes: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Rays (B, N, 3) through the scenes `planes` (B, ...) -> rgb (B, N, 3), depth, opacity (B, N);
        in chunks of `render_chunk` rays per scene outside training (memory), stratified inside."""
        kwargs = dict(near=self.near, far=self.far, samples=self.samples_per_ray, stratified=self.training)
        if self.training or origins.shape[1] <= self.render_chunk:
            return self.field.render(planes, origins, directions, **kwargs)
        parts = [self.field.render(planes, o, d, **kwargs) for o, d in
                 zip(origins.split(self.render_chunk, 1), directions.split(self.render_chunk, 1))]
        return {k: torch.cat([p[k] for p in parts], dim=1) for k in parts[0]}

    def render_views(self, planes: torch.Tensor, quaternions: torch.Tensor, translations: torch.Tensor,
                     intrinsics: torch.Tensor, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pixels (B, F, R, 2) of F cameras (B, F, 4) / (B, F, 3) with intrinsics (B, 3) per scene
        -> rgb (B, F, R, 3), depth (B, F, R), opacity (B, F, R)."""
        batch, frames, rays = pixels.shape[:3]
        origins, directions = camera_rays(quaternions, translations, pixels,
                                          intrinsics[:, None, :].expand(batch, frames, 3))
        out = self.render_rays(planes, origins.reshape(batch, frames * rays, 3),
                               directions.reshape(batch, frames * rays, 3))
        return {k: v.reshape(batch, frames, rays, *v.shape[2:]) for k, v in out.items()}

    def render_frames(self, z: torch.Tensor, times: torch.Tensor, intrinsics: torch.Tensor, height: int, width: int,
                      quaternions: torch.Tensor | None = None,
                      translations: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Whole frames of latents z (B, D) at `times` (B, F): along the decoded camera path, or along
        the given cameras. rgb (B, F, H, W, 3), depth (B, F, H, W), plus the path used and the
        decoded tri-planes (for callers that probe the scene further, e.g. the enclosure test)."""
        z_scene, z_pose = self.split(z)
        if quaternions is None:
            quaternions, translations = self.pose_decoder(z_pose, times)
        pixels = pixel_centres(height, width).to(z.device).expand(*times.shape, -1, -1)
        planes = self.scene_decoder(z_scene)
        out = self.render_views(planes, quaternions, translations, intrinsics, pixels)
        frames = {k: v.reshape(*times.shape, height, width, *v.shape[3:]) for k, v in out.items()}
        return {**frames, "quaternion": quaternions, "translation": translations, "planes": planes}

    # --- training --------------------------------------------------------------------------
    def forward(self, index: torch.Tensor, times: torch.Tensor, quaternions: torch.Tensor, translations: torch.Tensor,
                intrinsics: torch.Tensor, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Trajectories `index` (B,): render `pixels` (B, F, R, 2) from their ground-truth cameras and
        decode their poses at `times` (B, F). The latent's squared norm comes back for logging."""
        z = self.latent(index)
        z_scene, z_pose = self.split(z)
        out = self.render_views(self.scene_decoder(z_scene), quaternions, translations, intrinsics, pixels)
        out["quaternion"], out["translation"] = self.pose_decoder(z_pose, times)
        out["latent_norm"] = z.detach().pow(2).sum(-1).mean().sqrt()
        return out
