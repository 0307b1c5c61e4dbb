"""Linear layers whose weights a hypernetwork generates from a routed weight embedding.

The hypernetwork G is linear in the embedding z, W(z) = reshape(G z + b), so a layer can be
applied per example with one batched matmul (weights (n, d_in, d_out)), and per token without
materialising (n, L, d_in, d_out): alpha-mixing the outputs of the K pool entries' layers is
exactly the layer of the mixed embedding. The low-rank option generates W0 + A(z) B(z).
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import require_int
from models.layers.router import Routing


class Generator(nn.Linear):
    """z -> gain * G z + b, with gain = 1 / d_embed and G stored d_embed times larger.

    The function is that of a plain linear map with weights of std `weight_std`, but Adam moves
    each stored entry by about the learning rate, and those steps add up coherently over the
    d_embed entries of z: without the gain, generated weights would train d_embed times faster
    than an ordinary layer's (and a Hyper-UT would collapse to one ACT step).
    """

    def __init__(self, d_embed: int, size: int, *, weight_std: float, bias: bool = True) -> None:
        super().__init__(d_embed, size, bias=bias)
        self.gain = 1.0 / d_embed
        nn.init.normal_(self.weight, std=weight_std * d_embed)
        if bias:
            nn.init.zeros_(self.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.linear(z, self.weight * self.gain, self.bias)


class GeneratedLinear(nn.Module):
    """y = x W(z) + b(z) for a routed embedding z; `rank` None generates full weights."""

    def __init__(self, d_in: int, d_out: int, *, d_embed: int, rank: int | None = None, bias: bool = True) -> None:
        super().__init__()
        if rank is not None:
            require_int(rank, "rank", low=1, high=min(d_in, d_out), hint="None generates full weights")
        self.d_in, self.d_out, self.rank = d_in, d_out, rank
        scale = 1.0 / math.sqrt(d_in)
        if rank is None:
            # The generator's bias is the weight every z shares; its matrix adds the z-dependent part.
            self.weights = Generator(d_embed, d_in * d_out, weight_std=scale / math.sqrt(d_embed))
            nn.init.uniform_(self.weights.bias, -scale, scale)
        else:
            self.base = nn.Parameter(torch.empty(d_in, d_out).uniform_(-scale, scale))
            # A(z) entries ~ 1/sqrt(rank), B(z) entries ~ scale: A(z) B(z) starts at a plain layer's scale.
            self.left = Generator(d_embed, d_in * rank, weight_std=1.0 / math.sqrt(d_embed * rank), bias=False)
            self.right = Generator(d_embed, rank * d_out, weight_std=scale / math.sqrt(d_embed), bias=False)
        self.bias = Generator(d_embed, d_out, weight_std=0.01) if bias else None
        self._held: tuple[torch.Tensor, torch.Tensor] | None = None  # (pool, W(pool)) inside `pool_weights_held`
        self._holding = False

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """The full weight matrices W(z): (..., d_in, d_out) for embeddings z (..., d_embed)."""
        if self.rank is None:
            return self.weights(z).unflatten(-1, (self.d_in, self.d_out))
        left = self.left(z).unflatten(-1, (self.d_in, self.rank))
        right = self.right(z).unflatten(-1, (self.rank, self.d_out))
        return self.base + left @ right

    def pool_weights(self, pool: torch.Tensor) -> torch.Tensor:
        """W(E_k) for every pool entry, (K, d_in, d_out). Inside `pool_weights_held` they are
        generated once and reused while the pool tensor is the same one (a recurrent pass applies
        the block many times, and its parameters do not change within one forward)."""
        if self._held is not None and self._held[0] is pool:
            return self._held[1]
        weights = self.generate(pool)
        if self._holding:
            self._held = (pool, weights)
        return weights

    def example_weights(self, routing: Routing) -> torch.Tensor:
        """W(z_b) for per-example routing, (n, d_in, d_out), by the cheaper of two exact routes:
        generate from each mixture (n * d_embed products per weight) or mix the K pool entries'
        generated weights (K * d_embed + n * K), equal because G is linear and sum_k alpha_k = 1."""
        pool_size, d_embed = routing.pool.shape
        if pool_size < d_embed:
            return torch.einsum("nk,kio->nio", routing.weights, self.pool_weights(routing.pool))
        return self.generate(routing.mixture)

    def forward(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        """x (n, L, d_in) -> (n, L, d_out) with per-example or per-token generated weights."""
        z = routing.mixture
        if self.rank is not None:
            left = self.left(z).unflatten(-1, (self.d_in, self.rank))
            right = self.right(z).unflatten(-1, (self.rank, self.d_out))
            if routing.per_token:
                low = torch.einsum("nli,nlir->nlr", x, left)
                y = x @ self.base + torch.einsum("nlr,nlro->nlo", low, right)
            else:
                y = x @ self.base + torch.bmm(torch.bmm(x, left), right)
        elif routing.per_token:
            # sum_k alpha_k (x W(E_k)) = x W(sum_k alpha_k E_k) because G is linear: K matmuls
            # instead of an (n, L, d_in, d_out) tensor of per-token weights.
            experts = self.pool_weights(routing.pool)  # (K, d_in, d_out)
            outputs = torch.einsum("nli,kio->nlko", x, experts)
            y = (routing.weights[..., None] * outputs).sum(dim=-2)
        else:
            y = torch.bmm(x, self.example_weights(routing))
        if self.bias is not None:
            b = self.bias(z)
            y = y + (b if routing.per_token else b[:, None, :])
        return y


@contextlib.contextmanager
def pool_weights_held(module: nn.Module) -> Iterator[None]:
    """Inside the `with` statement every `GeneratedLinear` of `module` generates its pool entries'
    weights once; on exit they are dropped, so the next forward (after an optimizer step)
    regenerates them and no autograd graph outlives the pass that built it."""
    layers = [layer for layer in module.modules() if isinstance(layer, GeneratedLinear)]
    for layer in layers:
        layer._holding = True
    try:
        yield
    finally:
        for layer in layers:
            layer._holding, layer._held = False, None
