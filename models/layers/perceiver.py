"""PerceiverIO pieces: a pre-norm cross-attention block and the latent encoder built from it.

Learned latents read an input set by cross-attention and refine themselves by self-attention,
so the cost is linear in the input size and the result is invariant to the inputs' order.
"""
from __future__ import annotations

import torch
from torch import nn

from models.layers.attention.multihead import MultiHeadAttention
from models.layers.block import TransformerBlock
from models.layers.feedforward import FeedForward


class CrossAttentionBlock(nn.Module):
    """x + attn(norm(x), context = norm(context)), then x + ffn(norm(x)).

    Each query token attends only to the context, never to other queries: its output does not
    depend on which other queries are in the batch.
    """

    def __init__(self, d_model: int, d_context: int, num_heads: int, d_ff: int) -> None:
        super().__init__()
        self.norm_query = nn.LayerNorm(d_model)
        self.norm_context = nn.LayerNorm(d_context)
        self.attention = MultiHeadAttention(d_model, num_heads, d_context=d_context)
        self.norm_ff = nn.LayerNorm(d_model)
        self.feedforward = FeedForward(d_model, d_ff)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attention(self.norm_query(x), context_mask, context=self.norm_context(context))
        return x + self.feedforward(self.norm_ff(x))


class PerceiverEncoder(nn.Module):
    """Inputs (batch, n, d_input) -> latents (batch, num_latents, d_latent).

    `num_blocks` times: the latents re-read the inputs (cross-attention), then apply
    `self_attends_per_block` self-attention blocks.
    """

    def __init__(self, *, d_input: int, num_latents: int, d_latent: int, num_blocks: int,
                 self_attends_per_block: int, num_heads: int, d_ff: int | None = None) -> None:
        super().__init__()
        d_ff = d_ff or 4 * d_latent
        self.latents = nn.Parameter(torch.randn(num_latents, d_latent) * 0.02)
        self.reads = nn.ModuleList(CrossAttentionBlock(d_latent, d_input, num_heads, d_ff) for _ in range(num_blocks))
        self.thinks = nn.ModuleList(
            nn.ModuleList(TransformerBlock(d_latent, num_heads, d_ff) for _ in range(self_attends_per_block))
            for _ in range(num_blocks))

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        # A copy, not an expanded view: a no-grad view of a parameter confuses module hooks (FLOP counting).
        latents = self.latents.repeat(inputs.shape[0], 1, 1)
        for read, thinks in zip(self.reads, self.thinks):
            latents = read(latents, inputs, mask)
            for block in thinks:
                latents = block(latents)
        return latents
