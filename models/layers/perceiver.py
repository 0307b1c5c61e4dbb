"""PerceiverIO pieces: cross-attention that reads a set, and the latent encoder built from it.

Learned latents read an input set by cross-attention and refine themselves by self-attention,
so the cost is linear in the input size and the result is invariant to the inputs' order.
Keys and values may come from different embeddings of the same points ("where" vs "what"):
reading by position only is much easier to learn than reading by noisy content.
"""
from __future__ import annotations

import torch
from torch import nn

from models.layers.attention.multihead import MultiHeadAttention
from models.layers.block import TransformerBlock
from models.layers.feedforward import FeedForward


def attend(attention: MultiHeadAttention, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
           key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """`attention`'s projections and core with keys and values taken from different tensors."""
    q = attention.split_heads(attention.query(queries))
    k = attention.split_heads(attention.key(keys))
    v = attention.split_heads(attention.value(values))
    y = attention.core(q, k, v, key_mask)
    batch, _, length, _ = y.shape
    return attention.out(y.transpose(1, 2).reshape(batch, length, attention.num_heads * attention.head_dim))


class CrossAttention(nn.Module):
    """Pre-norm cross-attention: attn(norm(x), norm(keys), norm(values)), without a residual.

    Each query token attends only to the context, never to other queries: its output does not
    depend on which other queries are in the batch.
    """

    def __init__(self, d_model: int, d_context: int, num_heads: int) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(d_model)
        self.norm_keys = nn.LayerNorm(d_context)
        self.norm_values = nn.LayerNorm(d_context)
        self.attention = MultiHeadAttention(d_model, num_heads, d_context=d_context)

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        values = keys if values is None else values
        return attend(self.attention, self.norm_query(x), self.norm_keys(keys), self.norm_values(values), key_mask)


class CrossAttentionBlock(nn.Module):
    """x + cross-attention(x -> context), then x + ffn(norm(x)) when `d_ff` is given."""

    def __init__(self, d_model: int, d_context: int, num_heads: int, d_ff: int | None = None) -> None:
        super().__init__()
        self.cross = CrossAttention(d_model, d_context, num_heads)
        self.norm_ff = nn.LayerNorm(d_model) if d_ff else None
        self.feedforward = FeedForward(d_model, d_ff) if d_ff else None

    def forward(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.cross(x, keys, values, key_mask)
        if self.feedforward is not None:
            x = x + self.feedforward(self.norm_ff(x))
        return x


class PerceiverEncoder(nn.Module):
    """Inputs (batch, n, d_input) -> latents (batch, num_latents, d_latent).

    `num_blocks` times: the latents re-read the inputs (cross-attention, with a feed-forward
    layer when `read_ff`), then apply `self_attends_per_block` self-attention blocks.
    """

    def __init__(self, *, d_input: int, num_latents: int, d_latent: int, num_blocks: int,
                 self_attends_per_block: int, num_heads: int, d_ff: int | None = None,
                 read_ff: bool = True) -> None:
        super().__init__()
        d_ff = d_ff or 4 * d_latent
        # Unit-scale latents: small ones are swamped by what is added to all of them alike (the
        # first read's near-uniform average, a time embedding), they become one vector and the
        # queries can no longer tell them apart.
        self.latents = nn.Parameter(torch.randn(num_latents, d_latent))
        self.reads = nn.ModuleList(CrossAttentionBlock(d_latent, d_input, num_heads, d_ff if read_ff else None)
                                   for _ in range(num_blocks))
        self.thinks = nn.ModuleList(
            nn.ModuleList(TransformerBlock(d_latent, num_heads, d_ff) for _ in range(self_attends_per_block))
            for _ in range(num_blocks))

    def forward(self, keys: torch.Tensor, values: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                condition: torch.Tensor | None = None) -> torch.Tensor:
        """`values` default to `keys`; `condition` (batch, d_latent), e.g. a timestep embedding,
        is added to every latent before the first read."""
        # A copy, not an expanded view: a no-grad view of a parameter confuses module hooks (FLOP counting).
        latents = self.latents.repeat(keys.shape[0], 1, 1)
        if condition is not None:
            latents = latents + condition[:, None, :]
        for read, thinks in zip(self.reads, self.thinks):
            latents = read(latents, keys, values, mask)
            for block in thinks:
                latents = block(latents)
        return latents
