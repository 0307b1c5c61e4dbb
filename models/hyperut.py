"""Hyper-UT (Abnar et al. 2023): Universal Transformer steps built from hyper-modules, with ACT.

A hyper-module holds a pool of K weight embeddings; a single-head attention router, queried
from the current state, mixes them, and a hypernetwork generates the weights of the FFN and/or
the attention projections from the mixture. Re-routing at every step lets one shared block
compute a different function at each depth and for each example (or token).
"""
from __future__ import annotations

import contextlib
from typing import ContextManager, Sequence

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers import (FeedForward, GeneratedLinear, MultiHeadAttention, PoolRouter, Routing,
                           activation, pool_weights_held, routing_diagnostics)
from models.universal import UniversalTransformerClassifier, UniversalViT

GENERATED_SUBLAYERS = ("attention", "ffn")


class HyperFeedForward(nn.Module):
    """d_model -> d_ff -> d_model with both matrices generated from the routed embedding."""

    def __init__(self, d_model: int, d_ff: int, *, d_embed: int, rank: int | None, activation_name: str,
                 dropout: float) -> None:
        super().__init__()
        self.inner = GeneratedLinear(d_model, d_ff, d_embed=d_embed, rank=rank)
        self.outer = GeneratedLinear(d_ff, d_model, d_embed=d_embed, rank=rank)
        self.act = activation(activation_name)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        return self.outer(self.dropout(self.act(self.inner(x, routing))), routing)


class HyperAttention(MultiHeadAttention):
    """Multi-head self-attention whose query, key, value and output projections are generated.

    Everything else is MultiHeadAttention's, bindings included: `MultiHeadAttention.attention`
    swaps the core here too, and a core that reads no keys gets no key projection.
    """

    def __init__(self, d_model: int, num_heads: int, *, d_embed: int, rank: int | None) -> None:
        self.generated = {"d_embed": d_embed, "rank": rank}  # read by `projection` during super().__init__
        super().__init__(d_model, num_heads)

    def projection(self, d_in: int, d_out: int, bias: bool) -> nn.Module:
        return GeneratedLinear(d_in, d_out, bias=bias, **self.generated)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, routing: Routing) -> torch.Tensor:
        def heads(projection: GeneratedLinear | None) -> torch.Tensor | None:
            return None if projection is None else self.split_heads(projection(x, routing))

        y = self.core(heads(self.query), heads(self.key), heads(self.value), mask)
        batch, length = x.shape[:2]
        return self.out(y.transpose(1, 2).reshape(batch, length, self.num_heads * self.head_dim), routing)


@gin.configurable
class HyperBlock(nn.Module):
    """A pre-norm Transformer block whose `generate`d sub-layers come from one hyper-module.

    The router is queried once per application from the block's input, so inside a UT each
    step re-routes. Returns (state, routing weights); `diagnostics` turns the weights of all
    steps into router entropy and pool usage. Within one recurrent pass (`recurrence`) the pool
    entries' generated weights are computed once, not at every step (`hold_pool_weights`;
    `launch/bench.py hyper_pool` times the two).
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, *, dropout: float = 0.0, pool_size: int = 8,
                 d_embed: int = 32, routing: str = "per_example", generate: Sequence[str] = ("ffn",),
                 rank: int | None = None, activation_name: str = "gelu", hold_pool_weights: bool = True) -> None:
        super().__init__()
        self.hold_pool_weights = hold_pool_weights
        generate = (generate,) if isinstance(generate, str) else tuple(generate)
        require(len(generate) > 0 and set(generate) <= set(GENERATED_SUBLAYERS),
                f"HyperBlock.generate must name one or more of {GENERATED_SUBLAYERS}, got {generate!r}")
        self.generate = generate
        self.router = PoolRouter(d_model, pool_size=pool_size, d_embed=d_embed, routing=routing)
        if "attention" in generate:
            self.attention = HyperAttention(d_model, num_heads, d_embed=d_embed, rank=rank)
        else:
            self.attention = MultiHeadAttention(d_model, num_heads)
        if "ffn" in generate:
            self.feedforward = HyperFeedForward(d_model, d_ff, d_embed=d_embed, rank=rank,
                                                activation_name=activation_name, dropout=dropout)
        else:
            self.feedforward = FeedForward(d_model, d_ff, activation_name=activation_name, dropout=dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        routing = self.router(x, mask)
        h = self.norm1(x)
        if "attention" in self.generate:
            x = x + self.dropout(self.attention(h, mask, routing))
        else:
            x = x + self.dropout(self.attention(h, mask))
        h = self.norm2(x)
        if "ffn" in self.generate:
            x = x + self.dropout(self.feedforward(h, routing))
        else:
            x = x + self.dropout(self.feedforward(h))
        return x, routing.weights

    def recurrence(self) -> ContextManager[None]:
        """Entered by the recurrent encoder around all the steps of one forward."""
        return pool_weights_held(self) if self.hold_pool_weights else contextlib.nullcontext()

    @staticmethod
    def diagnostics(weights: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return routing_diagnostics(weights)


@gin.configurable
class HyperUT(UniversalTransformerClassifier):
    """Hyper-UT over tokens: the UT classifier with `HyperBlock` steps (bind `HyperBlock.*`).

    `act = False` gives the fixed-depth "Hyper" baseline (hyper-modules without adaptivity).
    """

    default_block = HyperBlock


@gin.configurable
class HyperUViT(UniversalViT):
    """HyperU-ViT: U-ViT with `HyperBlock` steps and per-example ACT over the patch sequence."""

    default_block = HyperBlock
