"""The DPF score network (Zhuang et al., ICLR 2023): a PerceiverIO over coordinate-signal pairs.

Learned latents read the noisy context set (keys from the points' coordinates, values from
coordinates and noisy values) and refine themselves by self-attention; every query reads the
latents by cross-attention from its coordinate alone, and an MLP turns what it read, its own
noisy value and the time into the noise estimate. Queries never see each other and coordinates
are encoded point by point, so any number of queries, at any resolution, can be decoded from one
context, in chunks if memory asks for it.
"""
from __future__ import annotations

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers import CrossAttention, FourierFeatures, PerceiverEncoder, TimestepEmbedding


def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))


@gin.configurable
class FieldDenoiser(nn.Module):
    """Predicts the diffusion output (eps, x0 or v) at query coordinates from a noisy context.

    Inputs are batched sets: coordinates (batch, n, coord_dim), noisy values (batch, n,
    signal_dim) and integer timesteps (batch,). With `num_classes` > 0 the model also takes a
    label per field (label `num_classes` = unconditional), for classifier-free guidance.
    """

    def __init__(self, *, coord_dim: int = 2, signal_dim: int = 3, d_model: int = 64, num_latents: int = 32,
                 d_latent: int = 64, num_blocks: int = 2, self_attends_per_block: int = 2, num_heads: int = 4,
                 num_frequencies: int = 6, d_ff: int | None = None, num_classes: int = 0) -> None:
        super().__init__()
        require(d_model % num_heads == 0 and d_latent % num_heads == 0,
                f"FieldDenoiser.num_heads = {num_heads} must divide d_model = {d_model} and d_latent = {d_latent}")
        require(num_blocks >= 1, f"FieldDenoiser.num_blocks must be >= 1, got {num_blocks}")
        self.coord_dim, self.signal_dim, self.num_classes = coord_dim, signal_dim, num_classes
        d_ff = d_ff or 4 * d_model
        self.positional = FourierFeatures(coord_dim, num_frequencies)
        self.time = TimestepEmbedding(d_model, num_classes=num_classes)
        pe = self.positional.out_dim
        # Where a context point is (keys) and what it says (values) are embedded apart: reading by
        # position is far easier to learn than reading by noisy content (see docs/dpf.md).
        self.context_keys = _mlp(pe, d_model)
        self.context_values = _mlp(pe + signal_dim, d_model)
        self.latent_time = nn.Linear(d_model, d_latent)  # the time reaches the latents, not every token
        self.encoder = PerceiverEncoder(d_input=d_model, num_latents=num_latents, d_latent=d_latent,
                                        num_blocks=num_blocks, self_attends_per_block=self_attends_per_block,
                                        num_heads=num_heads, d_ff=d_ff, read_ff=False)
        self.query_tokens = _mlp(pe, d_model)
        self.decoder = CrossAttention(d_model, d_latent, num_heads)
        # An MLP reads what the query read, its own noisy value (the skip from the noisy signal)
        # and the time. A single zero-initialised Linear behind a LayerNorm here, as in DiT,
        # left the model stuck at pointwise shrinkage, never reading the context.
        self.output = nn.Sequential(nn.Linear(2 * d_model + signal_dim, d_model), nn.GELU(),
                                    nn.Linear(d_model, signal_dim))

    def _check(self, coords: torch.Tensor, values: torch.Tensor, what: str) -> None:
        require(coords.shape[-1] == self.coord_dim and values.shape[-1] == self.signal_dim,
                f"{what}: the model expects coordinates of dimension {self.coord_dim} and signals of "
                f"dimension {self.signal_dim} (FieldDenoiser.coord_dim / signal_dim), got "
                f"{coords.shape[-1]} and {values.shape[-1]}")

    def encode(self, context_coords: torch.Tensor, context_values: torch.Tensor, t: torch.Tensor,
               labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(latents, time embedding) from the noisy context set."""
        self._check(context_coords, context_values, "context")
        time = self.time(t, labels)
        where = self.positional(context_coords)
        keys, values = self.context_keys(where), self.context_values(torch.cat([where, context_values], dim=-1))
        return self.encoder(keys, values, condition=self.latent_time(time)), time

    def decode(self, latents: torch.Tensor, time: torch.Tensor, query_coords: torch.Tensor,
               query_values: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """The prediction at every query, `chunk` queries at a time (queries are independent)."""
        self._check(query_coords, query_values, "queries")
        if chunk is not None and query_coords.shape[1] > chunk:
            return torch.cat([self.decode(latents, time, query_coords[:, i:i + chunk], query_values[:, i:i + chunk])
                              for i in range(0, query_coords.shape[1], chunk)], dim=1)
        read = self.decoder(self.query_tokens(self.positional(query_coords)), latents)
        time = time[:, None, :].expand(-1, query_coords.shape[1], -1)
        return self.output(torch.cat([read, query_values, time], dim=-1))

    def forward(self, context_coords: torch.Tensor, context_values: torch.Tensor, query_coords: torch.Tensor,
                query_values: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None,
                chunk: int | None = None) -> dict[str, torch.Tensor]:
        latents, time = self.encode(context_coords, context_values, t, labels)
        return {"prediction": self.decode(latents, time, query_coords, query_values, chunk)}
