"""Synthesizer attention (Tay et al., 2021): attention weights synthesised without (or beside) Q K^T.

'random': a learned per-head L x L logit matrix; 'factorized_random': R1 R2^T of rank k; 'dense':
each query token's logits over positions from a two-layer MLP of that token. With
`dot_product=True` the synthetic logits are mixed with Q K^T / sqrt(d) by learned weights.
"""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import require
from models.layers.attention.masking import check_capacity, masked, positions_for

MODES = ("random", "factorized_random", "dense")


@gin.configurable
class SynthesizerAttention(nn.Module):
    """Softmax over synthetic (optionally + dot-product) logits; padded keys masked."""

    def __init__(self, *, num_heads: int, head_dim: int, max_len: int, mode: str = "random",
                 dot_product: bool = False, factor_rank: int = 32, trainable: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        require(mode in MODES, f"SynthesizerAttention.mode must be one of {MODES}, got {mode!r}")
        require(factor_rank >= 1, f"SynthesizerAttention.factor_rank must be >= 1, got {factor_rank}")
        require(max_len >= 1, f"SynthesizerAttention.max_len must be >= 1, got {max_len}")
        self.mode, self.dot_product = mode, dot_product
        self.capacity = positions_for(max_len)
        n = self.capacity
        if mode == "random":
            table = torch.randn(num_heads, n, n) * 0.02
            self.logits = nn.Parameter(table, requires_grad=trainable)
        elif mode == "factorized_random":
            self.left = nn.Parameter(torch.randn(num_heads, n, factor_rank) * factor_rank ** -0.5, requires_grad=trainable)
            self.right = nn.Parameter(torch.randn(num_heads, n, factor_rank) * factor_rank ** -0.5, requires_grad=trainable)
        else:  # dense: F(x_i) = W2 relu(W1 x_i + b1) + b2, per head, on that head's query vector
            self.hidden = nn.Parameter(torch.randn(num_heads, head_dim, head_dim) * head_dim ** -0.5)
            self.hidden_bias = nn.Parameter(torch.zeros(num_heads, 1, head_dim))
            self.to_logits = nn.Parameter(torch.randn(num_heads, head_dim, n) * head_dim ** -0.5)
            self.logit_bias = nn.Parameter(torch.zeros(num_heads, 1, n))
        # The mixture weights of the paper's "Synthesizer + Vanilla" variant.
        self.mix = nn.Parameter(torch.ones(2)) if dot_product else None
        self.scale = head_dim ** -0.5
        self.dropout = nn.Dropout(dropout)
        # Read by MultiHeadAttention: projections the core never reads are not built (unused
        # parameters would break DDP).
        self.uses_queries = dot_product or mode == "dense"
        self.uses_keys = dot_product

    def synthetic_logits(self, q: torch.Tensor | None, length: int) -> torch.Tensor:
        """(heads, L, L) for the random modes, (batch, heads, L, L) for dense."""
        if self.mode == "random":
            return self.logits[:, :length, :length]
        if self.mode == "factorized_random":
            return self.left[:, :length] @ self.right[:, :length].transpose(-1, -2)
        hidden = F.relu(torch.einsum("bhld,hde->bhle", q, self.hidden) + self.hidden_bias)
        return torch.einsum("bhle,hen->bhln", hidden, self.to_logits[..., :length]) + self.logit_bias[..., :length]

    def forward(self, q: torch.Tensor | None, k: torch.Tensor | None, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, _, length, _ = v.shape
        check_capacity(length, self.capacity, "SynthesizerAttention")
        logits = self.synthetic_logits(q, length)
        if self.dot_product:
            logits = self.mix[0] * logits + self.mix[1] * ((q * self.scale) @ k.transpose(-1, -2))
        if key_mask is not None:
            logits = masked(logits.expand(batch, *logits.shape[-3:]), key_mask[:, None, None, :].bool())
        return self.dropout(logits.softmax(dim=-1)) @ v
