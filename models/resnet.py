"""BiT-style ResNet v2 (Kolesnikov et al. 2020): pre-activation bottleneck units with GroupNorm
and weight-standardised convolutions, so it trains at any batch size; the third family of
"Exploring the Limits of Large Scale Pre-training" next to ViT and MLP-Mixer.

Each residual unit is one stage of the StagedModel interface, so few-shot probes can read the
pooled representation after any unit. The last stage ends with the network's final GroupNorm +
ReLU (a pre-activation net normalises only before its head), so its pooled output is pre_logits.
"""
from __future__ import annotations

import math
from typing import Sequence

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers import StagedModel, StdConv2d


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= `groups` that divides `channels`."""
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class PreActBottleneck(nn.Module):
    """norm-relu-conv1x1, norm-relu-conv3x3 (stride), norm-relu-conv1x1, plus the shortcut
    (a strided 1x1 projection of the pre-activated input when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, c_mid: int, *, stride: int, groups: int) -> None:
        super().__init__()
        self.norm1 = group_norm(c_in, groups)
        self.conv1 = StdConv2d(c_in, c_mid, kernel_size=1, bias=False)
        self.norm2 = group_norm(c_mid, groups)
        self.conv2 = StdConv2d(c_mid, c_mid, kernel_size=3, stride=stride, padding=1, bias=False)
        self.norm3 = group_norm(c_mid, groups)
        self.conv3 = StdConv2d(c_mid, c_out, kernel_size=1, bias=False)
        self.projection = (StdConv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)
                           if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.norm1(x))
        shortcut = self.projection(pre) if self.projection is not None else x
        h = self.conv1(pre)
        h = self.conv2(torch.relu(self.norm2(h)))
        h = self.conv3(torch.relu(self.norm3(h)))
        return h + shortcut


@gin.configurable
class ResNetV2(StagedModel):
    """Stem conv, then groups of bottleneck units (group g: `units[g]` units, bottleneck width
    `width * 2**g`, output 4x that; every group after the first halves the resolution), final
    GroupNorm + ReLU, global average pool and a zero-initialised linear head (as in BiT).

    BiT's ImageNet stem is `stem_kernel = 7, stem_stride = 2, stem_pool = True`; the defaults
    suit 16x16 to 32x32 images.
    """

    def __init__(self, *, num_classes: int, channels: int = 3, width: int = 16,
                 units: Sequence[int] = (1, 1, 1), norm_groups: int = 32, stem_kernel: int = 3,
                 stem_stride: int = 1, stem_pool: bool = False, zero_head: bool = True) -> None:
        super().__init__()
        require(width >= 1 and len(units) >= 1 and all(u >= 1 for u in units),
                f"ResNetV2 needs width >= 1 and at least one unit per group, got width={width}, units={units}")
        stem_width = 4 * width
        self.stem = nn.Sequential(
            StdConv2d(channels, stem_width, kernel_size=stem_kernel, stride=stem_stride,
                      padding=stem_kernel // 2, bias=False),
            nn.MaxPool2d(3, stride=2, padding=1) if stem_pool else nn.Identity())
        blocks: list[nn.Module] = []
        c_in = stem_width
        for group, count in enumerate(units):
            c_mid = width * 2 ** group
            for index in range(count):
                stride = 2 if group > 0 and index == 0 else 1
                blocks.append(PreActBottleneck(c_in, 4 * c_mid, c_mid, stride=stride, groups=norm_groups))
                c_in = 4 * c_mid
        blocks[-1] = nn.Sequential(blocks[-1], group_norm(c_in, norm_groups), nn.ReLU())
        self.stages = nn.ModuleList(blocks)
        self.head = nn.Linear(c_in, num_classes)
        if zero_head:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def readout(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.mean(dim=(-2, -1))
