"""Weight-standardised convolution (Qiao et al. 2019), the convolution of BiT ResNets.

Each output filter is standardised to zero mean and unit variance before it is applied, which
together with GroupNorm trains well at any batch size (no BatchNorm statistics to share).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class StdConv2d(nn.Conv2d):
    """nn.Conv2d whose weight is standardised per output channel on every forward pass."""

    def __init__(self, *args, eps: float = 1e-8, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.eps = eps

    def standardized_weight(self) -> torch.Tensor:
        weight = self.weight
        mean = weight.mean(dim=(1, 2, 3), keepdim=True)
        var = weight.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return (weight - mean) / torch.sqrt(var + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding,
                        self.dilation, self.groups)
