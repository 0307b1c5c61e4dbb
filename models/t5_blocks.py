"""The blocks a T5 stack is made of, selected by name from gin: which layer mixes tokens
(attention, lightweight or dynamic convolution, an MLP-Mixer token MLP), which mixes channels
(a dense or gated FFN, or a Switch mixture of experts), or a whole Evolved Transformer cell.

Every block has one call signature, `block(x, mask, position_bias, memory, memory_mask,
source) -> (x, stats)`, so the stack neither knows nor cares which architecture it holds.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import torch
from torch import nn

from engine.errors import ConfigError
from models.layers import (DenseAttention, DynamicConvolution, EvolvedDecoderBlock, EvolvedEncoderBlock, FeedForward,
                           LightweightConvolution, MultiHeadAttention, SwitchFeedForward, TokenMixingMLP)

TOKEN_MIXERS = ("attention", "lightconv", "dynamicconv", "mixer")
FEEDFORWARDS = ("dense", "switch")
BLOCKS = ("standard", "evolved")


def rms_norm(width: int) -> nn.Module:
    """T5's norm: a learned scale, no mean subtraction, no bias."""
    return nn.RMSNorm(width, eps=1e-6)


@dataclasses.dataclass(frozen=True)
class BlockShape:
    """The shape axes every block needs (T5's d_model, d_ff, d_kv, heads) plus the FFN style."""

    d_model: int
    d_ff: int
    d_kv: int
    num_heads: int
    max_input_length: int
    ffn_activation: str = "relu"
    ffn_gated: bool = False

    def attention(self, *, core: Callable[..., nn.Module] | None = None) -> MultiHeadAttention:
        """T5 attention: no biases, heads of width d_kv (inner = heads * d_kv, not tied to d_model).
        `core=None` leaves the core to gin (`MultiHeadAttention.attention`)."""
        extra = {} if core is None else {"attention": core}
        return MultiHeadAttention(self.d_model, self.num_heads, head_dim=self.d_kv, bias=False, **extra)

    def feedforward(self) -> FeedForward:
        return FeedForward(self.d_model, self.d_ff, activation_name=self.ffn_activation,
                           gated=self.ffn_gated, bias=False)


class T5Block(nn.Module):
    """Pre-norm residual sublayers: token mixing, cross-attention (decoder only), channel mixing."""

    def __init__(self, *, shape: BlockShape, mixer: nn.Module, cross_attention: nn.Module | None,
                 feedforward: nn.Module) -> None:
        super().__init__()
        self.mixer_norm = rms_norm(shape.d_model)
        self.mixer = mixer
        self.cross_norm = rms_norm(shape.d_model) if cross_attention is not None else None
        self.cross_attention = cross_attention
        self.ffn_norm = rms_norm(shape.d_model)
        self.feedforward = feedforward

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None, memory: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None,
                source: tuple[torch.Tensor, torch.Tensor | None] | None = None) -> tuple[torch.Tensor, dict]:
        """`source` = (unpooled states, their mask): Funnel's pool-query-only attention, where the
        pooled `x` queries the full-length states of the previous block."""
        h = self.mixer_norm(x)
        if isinstance(self.mixer, MultiHeadAttention):
            if source is None:
                mixed = self.mixer(h, mask, position_bias=position_bias)
            else:
                mixed = self.mixer(h, source[1], self.mixer_norm(source[0]), position_bias=position_bias)
        else:
            mixed = self.mixer(h, mask)
        x = x + mixed
        if self.cross_attention is not None:
            x = x + self.cross_attention(self.cross_norm(x), memory_mask, memory)
        out = self.feedforward(self.ffn_norm(x))
        out, stats = out if isinstance(out, tuple) else (out, {})
        return x + out, stats


def token_mixer(kind: str, shape: BlockShape, *, causal: bool) -> nn.Module:
    """The layer that mixes information across positions."""
    if kind == "attention":
        # The encoder's core is left to gin, so `MultiHeadAttention.attention = @PerformerAttention`
        # swaps it; the decoder keeps dense attention, made causal through its position bias.
        return shape.attention(core=DenseAttention if causal else None)
    if kind == "lightconv":
        return LightweightConvolution(shape.d_model, causal=causal)
    if kind == "dynamicconv":
        return DynamicConvolution(shape.d_model, causal=causal)
    if kind == "mixer":
        if causal:
            raise ConfigError("the MLP-Mixer token MLP has no causal form: use it in the encoder only "
                              "(T5.decoder_mixer = 'attention')")
        return TokenMixingMLP(shape.max_input_length)
    raise ConfigError(f"unknown token mixer {kind!r}; choose from {TOKEN_MIXERS}")


def channel_mixer(kind: str, shape: BlockShape) -> nn.Module:
    if kind == "dense":
        return shape.feedforward()
    if kind == "switch":
        return SwitchFeedForward(shape.d_model, shape.d_ff, activation_name=shape.ffn_activation,
                                 gated=shape.ffn_gated)
    raise ConfigError(f"unknown feed-forward {kind!r}; choose from {FEEDFORWARDS}")


def make_block(kind: str, shape: BlockShape, *, decoder: bool, mixer: str, feedforward: str) -> nn.Module:
    """One encoder (decoder=False) or decoder layer of the named architecture."""
    if kind == "evolved":
        if decoder:
            return EvolvedDecoderBlock(shape.d_model, shape.d_ff,
                                       make_self_attention=functools.partial(shape.attention, core=DenseAttention),
                                       make_cross_attention=functools.partial(shape.attention, core=DenseAttention),
                                       make_norm=rms_norm)
        return EvolvedEncoderBlock(shape.d_model, shape.d_ff, make_attention=shape.attention, make_norm=rms_norm)
    if kind != "standard":
        raise ConfigError(f"unknown block {kind!r}; choose from {BLOCKS}")
    cross = shape.attention(core=DenseAttention) if decoder else None
    return T5Block(shape=shape, mixer=token_mixer(mixer, shape, causal=decoder), cross_attention=cross,
                   feedforward=channel_mixer(feedforward, shape))
