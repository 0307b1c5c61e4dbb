"""GAUDI's two latent decoders: the scene decoder d (z_scene -> tri-plane feature maps, a small
convolutional upsampler as in the paper's figure) and the camera-pose decoder c
((z_pose, s) -> unit quaternion and translation), which gives each scene its own camera path.
"""
from __future__ import annotations

import torch
from torch import nn

from engine.errors import require
from models.layers import FourierFeatures, normalize_quaternion


class SceneDecoder(nn.Module):
    """z_scene (B, D) -> planes (B, 3, C, S, S): a linear map to 3 x `base_channels` maps of
    S / 2^u pixels, then u rounds of (nearest 2x upsampling, 3x3 conv, ReLU) and a 3x3 conv.

    The three planes travel as the channels of one image (EG3D), so the convolutions can
    correlate them; `upsamplings` = 0 makes the decoder a plain linear map to the planes.
    """

    def __init__(self, latent_dim: int, *, resolution: int = 32, channels: int = 16, base_channels: int = 32,
                 upsamplings: int = 2) -> None:
        super().__init__()
        require(resolution % 2 ** upsamplings == 0 and resolution >= 2 * 2 ** upsamplings,
                f"the tri-plane resolution {resolution} must be a multiple of 2^upsamplings = {2 ** upsamplings} "
                f"and leave a start of at least 2 pixels")
        self.resolution, self.channels = resolution, channels
        self.start = resolution // 2 ** upsamplings
        width = 3 * (base_channels if upsamplings else channels)
        self.project = nn.Linear(latent_dim, width * self.start ** 2)
        layers: list[nn.Module] = []
        for _ in range(upsamplings):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        if upsamplings:
            layers.append(nn.Conv2d(width, 3 * channels, 3, padding=1))
        self.upsample = nn.Sequential(*layers)

    def forward(self, z_scene: torch.Tensor) -> torch.Tensor:
        start = self.project(z_scene).view(len(z_scene), -1, self.start, self.start)
        planes = self.upsample(start)
        return planes.view(len(z_scene), 3, self.channels, self.resolution, self.resolution)


class PoseDecoder(nn.Module):
    """(z_pose (B, D), times (B, F)) -> quaternions (B, F, 4) of unit norm, translations (B, F, 3).

    An MLP on z_pose and Fourier features of s: a smooth function of s, so a decoded path is
    smooth however finely it is sampled."""

    def __init__(self, latent_dim: int, *, hidden: int = 128, layers: int = 2, time_frequencies: int = 3) -> None:
        super().__init__()
        self.time_features = FourierFeatures(1, time_frequencies)
        widths = [latent_dim + self.time_features.out_dim] + [hidden] * layers
        body: list[nn.Module] = []
        for a, b in zip(widths, widths[1:]):
            body += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*body, nn.Linear(widths[-1], 7))
        with torch.no_grad():  # start at the identity rotation: a defined, non-degenerate quaternion
            self.body[-1].bias.zero_()
            self.body[-1].bias[0] = 1.0

    def forward(self, z_pose: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = times.shape[1]
        inputs = torch.cat([z_pose[:, None, :].expand(-1, frames, -1),
                            self.time_features(times[..., None].to(z_pose.dtype))], dim=-1)
        out = self.body(inputs)
        return normalize_quaternion(out[..., :4]), out[..., 4:]
