"""The DPF score network (Zhuang et al., ICLR 2023): a PerceiverIO over coordinate-signal pairs.

Context tokens (coordinates, noisy values, time) are read by learned latents; every query token
then reads the latents by cross-attention and predicts the noise at its coordinate. Queries never
see each other and coordinates are encoded point by point, so any number of queries, at any
resolution, can be decoded from one context, in chunks if memory asks for it.
"""
from __future__ import annotations

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers.fourier import FourierFeatures
from models.layers.perceiver import CrossAttentionBlock, PerceiverEncoder
from models.layers.timestep import TimestepEmbedding


def _projection(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.GELU())


class _PointTokens(nn.Module):
    """token = MLP([proj(PE(m)) | proj(y) | time]) for coordinate-signal pairs (m, y)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.mix = nn.Sequential(nn.Linear(3 * d_model, d_model), nn.GELU(), nn.Linear(d_model, d_model))

    def forward(self, coords: torch.Tensor, signal: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        time = time[:, None, :].expand(-1, coords.shape[1], -1)
        return self.mix(torch.cat([coords, signal, time], dim=-1))


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
        self.coord_proj = _projection(self.positional.out_dim, d_model)
        self.signal_proj = _projection(signal_dim, d_model)
        self.time = TimestepEmbedding(d_model, num_classes=num_classes)
        self.context_tokens = _PointTokens(d_model)
        self.query_tokens = _PointTokens(d_model)
        self.encoder = PerceiverEncoder(d_input=d_model, num_latents=num_latents, d_latent=d_latent,
                                        num_blocks=num_blocks, self_attends_per_block=self_attends_per_block,
                                        num_heads=num_heads, d_ff=d_ff)
        self.decoder = CrossAttentionBlock(d_model, d_latent, num_heads, d_ff)
        self.decoder_norm = nn.LayerNorm(d_model)
        # The output reads the decoded token and, as a skip, the query's own noisy value.
        self.output = nn.Linear(2 * d_model, signal_dim)
        nn.init.zeros_(self.output.weight)  # predict 0 at initialisation: an eps-loss of ~1
        nn.init.zeros_(self.output.bias)

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
        tokens = self.context_tokens(self.coord_proj(self.positional(context_coords)),
                                     self.signal_proj(context_values), time)
        return self.encoder(tokens), time

    def decode(self, latents: torch.Tensor, time: torch.Tensor, query_coords: torch.Tensor,
               query_values: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """The prediction at every query, `chunk` queries at a time (queries are independent)."""
        self._check(query_coords, query_values, "queries")
        if chunk is not None and query_coords.shape[1] > chunk:
            return torch.cat([self.decode(latents, time, query_coords[:, i:i + chunk], query_values[:, i:i + chunk])
                              for i in range(0, query_coords.shape[1], chunk)], dim=1)
        signal = self.signal_proj(query_values)
        tokens = self.query_tokens(self.coord_proj(self.positional(query_coords)), signal, time)
        decoded = self.decoder_norm(self.decoder(tokens, latents))
        return self.output(torch.cat([decoded, signal], dim=-1))

    def forward(self, context_coords: torch.Tensor, context_values: torch.Tensor, query_coords: torch.Tensor,
                query_values: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None,
                chunk: int | None = None) -> dict[str, torch.Tensor]:
        latents, time = self.encode(context_coords, context_values, t, labels)
        return {"prediction": self.decode(latents, time, query_coords, query_values, chunk)}
