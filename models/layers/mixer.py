"""MLP-Mixer layers (Tolstikhin et al. 2021), generic over (batch, tokens, channels).

Token mixing is an MLP applied along the token axis, shared over channels; channel mixing is
the usual position-wise feed-forward. Text encoders (T5's Mixer variant) and image Mixers both
build on these: a sequence shorter than `num_tokens` is zero-padded, so one layer serves any
length up to its maximum.
"""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ConfigError, require
from models.layers.feedforward import FeedForward, activation


@gin.configurable
class TokenMixingMLP(nn.Module):
    """(batch, tokens, channels) -> same shape; mixes across tokens, never across channels."""

    def __init__(self, num_tokens: int, *, hidden: int | None = None, activation_name: str = "gelu") -> None:
        super().__init__()
        require(num_tokens >= 1, f"TokenMixingMLP.num_tokens must be >= 1, got {num_tokens}")
        self.num_tokens = num_tokens
        self.act = activation(activation_name)
        self.inner = nn.Linear(num_tokens, hidden or 2 * num_tokens)
        self.outer = nn.Linear(hidden or 2 * num_tokens, num_tokens)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        length = x.shape[1]
        if length > self.num_tokens:
            raise ConfigError(f"a token-mixing MLP built for {self.num_tokens} tokens got {length}; "
                              "raise its num_tokens (the model's max_len)")
        if mask is not None:  # padding must not leak into real tokens
            x = x * mask[..., None].to(x.dtype)
        x = F.pad(x, (0, 0, 0, self.num_tokens - length))
        mixed = self.outer(self.act(self.inner(x.transpose(1, 2)))).transpose(1, 2)
        return mixed[:, :length]


@gin.configurable
class MixerBlock(nn.Module):
    """One Mixer layer: x + token_mix(norm(x)), then x + channel_mix(norm(x))."""

    def __init__(self, num_tokens: int, d_model: int, *, tokens_hidden: int | None = None,
                 channels_hidden: int | None = None, activation_name: str = "gelu") -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.token_mixing = TokenMixingMLP(num_tokens, hidden=tokens_hidden, activation_name=activation_name)
        self.norm2 = nn.LayerNorm(d_model)
        self.channel_mixing = FeedForward(d_model, channels_hidden or 4 * d_model, activation_name=activation_name)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.token_mixing(self.norm1(x), mask)
        return x + self.channel_mixing(self.norm2(x))
