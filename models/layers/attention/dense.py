"""Dense softmax attention through PyTorch's fused `scaled_dot_product_attention`."""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from torch import nn


def padding_bias(key_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(batch, length) real-token mask -> boolean (batch, 1, 1, length) mask SDPA broadcasts."""
    return None if key_mask is None else key_mask[:, None, None, :].bool()


@gin.configurable
class DenseAttention(nn.Module):
    """Full softmax attention over all keys (the quadratic baseline)."""

    cross_attention = True

    def __init__(self, *, num_heads: int, head_dim: int, dropout: float = 0.0, causal: bool = False) -> None:
        super().__init__()
        self.dropout = dropout
        self.causal = causal

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None, position_bias: torch.Tensor | None = None) -> torch.Tensor:
        """`position_bias` (broadcastable to (batch, heads, length_q, length_k)) is added to the
        attention logits: T5's relative position bias, or -inf entries for a causal decoder."""
        mask = padding_bias(key_mask)
        if self.causal:
            length_q, length_k = q.shape[-2], k.shape[-2]
            causal = torch.ones(length_q, length_k, dtype=torch.bool, device=q.device).tril(length_k - length_q)
            mask = causal if mask is None else mask & causal
        if position_bias is not None:
            bias = position_bias.to(q.dtype)
            mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                              dropout_p=self.dropout if self.training else 0.0)
