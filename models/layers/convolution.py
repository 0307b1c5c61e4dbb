"""Convolutions over sequences (batch, length, channels): depthwise-separable convolution (the
Evolved Transformer's branches) and the lightweight / dynamic convolutions of Wu et al. (2019)
that replace self-attention. `causal=True` looks only at the current and earlier positions.
"""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import require


def pad_for(kernel_size: int, causal: bool) -> tuple[int, int]:
    """(left, right) padding that keeps the length: all on the left when causal, centred otherwise."""
    if causal:
        return kernel_size - 1, 0
    return kernel_size // 2, kernel_size - 1 - kernel_size // 2


def masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero padded positions so they contribute nothing to their neighbours."""
    return x if mask is None else x * mask[..., None].to(x.dtype)


class SeparableConv1d(nn.Module):
    """Depthwise convolution (one kernel per channel) followed by a pointwise projection."""

    def __init__(self, channels: int, out_channels: int, kernel_size: int, *, causal: bool = False,
                 bias: bool = True) -> None:
        super().__init__()
        self.padding = pad_for(kernel_size, causal)
        self.depthwise = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=False)
        self.pointwise = nn.Linear(channels, out_channels, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = F.pad(masked(x, mask).transpose(1, 2), self.padding)
        return self.pointwise(self.depthwise(h).transpose(1, 2))


class _HeadConvolution(nn.Module):
    """Shared pieces: a GLU input projection, `num_heads` softmax-normalised kernels each shared
    by d_model / num_heads channels, weight dropout, and an output projection."""

    def __init__(self, d_model: int, *, num_heads: int, kernel_size: int, causal: bool,
                 weight_dropout: float, bias: bool) -> None:
        super().__init__()
        require(d_model % num_heads == 0, f"convolution num_heads = {num_heads} does not divide d_model = {d_model}")
        require(kernel_size >= 1, f"convolution kernel_size must be >= 1, got {kernel_size}")
        self.num_heads = num_heads
        self.kernel_size = kernel_size
        self.padding = pad_for(kernel_size, causal)
        self.weight_dropout = weight_dropout
        self.input = nn.Linear(d_model, 2 * d_model, bias=bias)
        self.output = nn.Linear(d_model, d_model, bias=bias)

    def normalise(self, logits: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(logits.float(), dim=-1)
        return F.dropout(weights, self.weight_dropout, self.training)

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, length, channels) -> (batch, length, heads, channels / heads, kernel)."""
        batch, length, channels = x.shape
        h = F.pad(x.transpose(1, 2), self.padding).unfold(-1, self.kernel_size, 1)  # (B, C, L, K)
        return h.permute(0, 2, 1, 3).reshape(batch, length, self.num_heads, channels // self.num_heads,
                                             self.kernel_size)


@gin.configurable
class LightweightConvolution(_HeadConvolution):
    """Depthwise convolution with one fixed kernel per head, shared across heads' channels."""

    def __init__(self, d_model: int, *, num_heads: int = 4, kernel_size: int = 7, causal: bool = False,
                 weight_dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__(d_model, num_heads=num_heads, kernel_size=kernel_size, causal=causal,
                         weight_dropout=weight_dropout, bias=bias)
        self.kernel = nn.Parameter(torch.randn(num_heads, kernel_size) * 0.1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = masked(F.glu(self.input(x), dim=-1), mask)
        channels = h.shape[-1]
        # One softmaxed kernel per head, repeated over the head's channels: a grouped conv1d.
        weight = self.normalise(self.kernel).to(h.dtype).repeat_interleave(channels // self.num_heads, dim=0)
        y = F.conv1d(F.pad(h.transpose(1, 2), self.padding), weight[:, None, :], groups=channels)
        return self.output(y.transpose(1, 2))


@gin.configurable
class DynamicConvolution(_HeadConvolution):
    """Like the lightweight convolution, but each position predicts its own kernels from its input."""

    def __init__(self, d_model: int, *, num_heads: int = 4, kernel_size: int = 7, causal: bool = False,
                 weight_dropout: float = 0.0, bias: bool = False) -> None:
        super().__init__(d_model, num_heads=num_heads, kernel_size=kernel_size, causal=causal,
                         weight_dropout=weight_dropout, bias=bias)
        self.predict = nn.Linear(d_model, num_heads * kernel_size, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = masked(F.glu(self.input(x), dim=-1), mask)
        batch, length, channels = h.shape
        kernels = self.normalise(self.predict(x).view(batch, length, self.num_heads, self.kernel_size))
        y = torch.einsum("blhck,blhk->blhc", self.windows(h), kernels.to(h.dtype))
        return self.output(y.reshape(batch, length, channels))
