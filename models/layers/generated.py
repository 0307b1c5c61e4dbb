"""Linear layers whose weights a hypernetwork generates from a routed weight embedding.

The hypernetwork G is linear in the embedding z, W(z) = reshape(G z + b), so a layer can be
applied per example with one batched matmul (weights (n, d_in, d_out)), and per token without
materialising (n, L, d_in, d_out): alpha-mixing the outputs of the K pool entries' layers is
exactly the layer of the mixed embedding. The low-rank option generates W0 + A(z) B(z).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from engine.errors import require
from models.layers.router import Routing


class GeneratedLinear(nn.Module):
    """y = x W(z) + b(z) for a routed embedding z; `rank` None generates full weights."""

    def __init__(self, d_in: int, d_out: int, *, d_embed: int, rank: int | None = None, bias: bool = True) -> None:
        super().__init__()
        require(rank is None or (isinstance(rank, int) and 1 <= rank <= min(d_in, d_out)),
                f"rank must be None or an integer in 1..{min(d_in, d_out)}, got {rank!r}")
        self.d_in, self.d_out, self.rank = d_in, d_out, rank
        scale = 1.0 / math.sqrt(d_in)
        if rank is None:
            # The generator's bias is the weight every z shares; its matrix adds the z-dependent part.
            self.weights = nn.Linear(d_embed, d_in * d_out)
            nn.init.normal_(self.weights.weight, std=scale / math.sqrt(d_embed))
            nn.init.uniform_(self.weights.bias, -scale, scale)
        else:
            self.base = nn.Parameter(torch.empty(d_in, d_out).uniform_(-scale, scale))
            self.left = nn.Linear(d_embed, d_in * rank, bias=False)
            self.right = nn.Linear(d_embed, rank * d_out, bias=False)
            # A(z) entries ~ 1/sqrt(rank), B(z) entries ~ scale: A(z) B(z) starts at a plain layer's scale.
            nn.init.normal_(self.left.weight, std=1.0 / math.sqrt(d_embed * rank))
            nn.init.normal_(self.right.weight, std=scale / math.sqrt(d_embed))
        self.bias = nn.Linear(d_embed, d_out) if bias else None
        if self.bias is not None:
            nn.init.normal_(self.bias.weight, std=0.01)
            nn.init.zeros_(self.bias.bias)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """The full weight matrices W(z): (..., d_in, d_out) for embeddings z (..., d_embed)."""
        if self.rank is None:
            return self.weights(z).unflatten(-1, (self.d_in, self.d_out))
        left = self.left(z).unflatten(-1, (self.d_in, self.rank))
        right = self.right(z).unflatten(-1, (self.rank, self.d_out))
        return self.base + left @ right

    def example_weights(self, routing: Routing) -> torch.Tensor:
        """W(z_b) for per-example routing, (n, d_in, d_out), by the cheaper of two exact routes:
        generate from each mixture (n * d_embed products per weight) or mix the K pool entries'
        generated weights (K * d_embed + n * K), equal because G is linear and sum_k alpha_k = 1."""
        pool_size, d_embed = routing.pool.shape
        if pool_size < d_embed:
            return torch.einsum("nk,kio->nio", routing.weights, self.generate(routing.pool))
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
            experts = self.generate(routing.pool)  # (K, d_in, d_out)
            outputs = torch.einsum("nli,kio->nlko", x, experts)
            y = (routing.weights[..., None] * outputs).sum(dim=-2)
        else:
            y = torch.bmm(x, self.example_weights(routing))
        if self.bias is not None:
            b = self.bias(z)
            y = y + (b if routing.per_token else b[:, None, :])
        return y
