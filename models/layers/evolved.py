"""Evolved Transformer blocks (So et al. 2019), the encoder and decoder cells found by
architecture search: a GLU, wide convolution branches, then attention and a feed-forward.

Attention and norms come from factories, so the blocks share the host model's attention layer
(and its position bias) and norm type. Residual sublayers are pre-norm, as in the paper.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import require
from models.layers.convolution import SeparableConv1d, masked, pad_for
from models.layers.feedforward import FeedForward

MakeModule = Callable[[], nn.Module]
MakeNorm = Callable[[int], nn.Module]


def pad_channels(x: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad the channel axis to `width` so narrower branches can be summed with wider ones."""
    return F.pad(x, (0, width - x.shape[-1]))


class EvolvedEncoderBlock(nn.Module):
    """GLU -> (1x1 ReLU | 3x1 conv ReLU) -> separable 9x1 conv -> self-attention -> FFN."""

    def __init__(self, d_model: int, d_ff: int, *, make_attention: MakeModule, make_norm: MakeNorm) -> None:
        super().__init__()
        require(d_model % 2 == 0, f"the Evolved Transformer needs an even d_model, got {d_model}")
        self.glu_norm = make_norm(d_model)
        self.glu = nn.Linear(d_model, 2 * d_model, bias=False)
        self.branch_norm = make_norm(d_model)
        self.wide = nn.Linear(d_model, 4 * d_model, bias=False)
        self.narrow_padding = pad_for(3, causal=False)
        self.narrow = nn.Conv1d(d_model, d_model // 2, 3, bias=False)
        self.mid_norm = make_norm(4 * d_model)
        self.separable = SeparableConv1d(4 * d_model, d_model // 2, 9, bias=False)
        self.attention_norm = make_norm(d_model)
        self.attention = make_attention()
        self.ffn_norm = make_norm(d_model)
        self.ffn = FeedForward(d_model, d_ff, activation_name="relu", bias=False)

    def forward(self, x, mask=None, position_bias=None, memory=None, memory_mask=None, source=None):
        x = x + F.glu(self.glu(self.glu_norm(x)), dim=-1)
        h = masked(self.branch_norm(x), mask)
        wide = F.relu(self.wide(h))
        narrow = F.relu(self.narrow(F.pad(h.transpose(1, 2), self.narrow_padding)).transpose(1, 2))
        h = self.mid_norm(wide + pad_channels(narrow, wide.shape[-1]))
        x = x + pad_channels(self.separable(h, mask), x.shape[-1])
        x = x + self.attention(self.attention_norm(x), mask, position_bias=position_bias)
        return x + self.ffn(self.ffn_norm(x)), {}


class EvolvedDecoderBlock(nn.Module):
    """(self-attention + encoder attention) -> causal separable 11x1 | 7x1 convs -> separable 7x1
    -> self-attention -> encoder attention -> swish FFN."""

    def __init__(self, d_model: int, d_ff: int, *, make_self_attention: MakeModule,
                 make_cross_attention: MakeModule, make_norm: MakeNorm) -> None:
        super().__init__()
        require(d_model % 2 == 0, f"the Evolved Transformer needs an even d_model, got {d_model}")
        self.branch_attention_norm = make_norm(d_model)
        self.branch_self_attention = make_self_attention()
        self.branch_cross_attention = make_cross_attention()
        self.conv_norm = make_norm(d_model)
        self.wide = SeparableConv1d(d_model, 2 * d_model, 11, causal=True, bias=False)
        self.narrow = SeparableConv1d(d_model, d_model // 2, 7, causal=True, bias=False)
        self.mid_norm = make_norm(2 * d_model)
        self.merge = SeparableConv1d(2 * d_model, d_model, 7, causal=True, bias=False)
        self.self_attention_norm = make_norm(d_model)
        self.self_attention = make_self_attention()
        self.cross_attention_norm = make_norm(d_model)
        self.cross_attention = make_cross_attention()
        self.ffn_norm = make_norm(d_model)
        self.ffn = FeedForward(d_model, d_ff, activation_name="silu", bias=False)

    def forward(self, x, mask=None, position_bias=None, memory=None, memory_mask=None, source=None):
        h = self.branch_attention_norm(x)
        x = (x + self.branch_self_attention(h, mask, position_bias=position_bias)
             + self.branch_cross_attention(h, memory_mask, memory))
        h = self.conv_norm(x)
        wide = F.relu(self.wide(h, mask))
        h = self.mid_norm(wide + pad_channels(self.narrow(h, mask), wide.shape[-1]))
        x = x + self.merge(h, mask)
        x = x + self.self_attention(self.self_attention_norm(x), mask, position_bias=position_bias)
        x = x + self.cross_attention(self.cross_attention_norm(x), memory_mask, memory)
        return x + self.ffn(self.ffn_norm(x)), {}
