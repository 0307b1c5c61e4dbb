"""Linear Transformer attention (Katharopoulos et al., 2020) with the feature map elu(x) + 1, O(L d^2).

y_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i)^T sum_j phi(k_j) + eps). The kernelised form
is shared with the Performer (performer.py), which swaps in random features.
"""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from torch import nn

from models.layers.attention.masking import real_mask


def kernel_attention(q_features: torch.Tensor, k_features: torch.Tensor, v: torch.Tensor,
                     key_mask: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Non-causal attention with positive features phi(q), phi(k) (batch, heads, length, m)."""
    batch, _, length, _ = k_features.shape
    k_features = k_features * real_mask(key_mask, batch, length, v.device)[:, None, :, None].to(k_features.dtype)
    context = torch.einsum("bhlm,bhld->bhmd", k_features, v)
    normaliser = torch.einsum("bhlm,bhm->bhl", q_features, k_features.sum(dim=2))
    return torch.einsum("bhlm,bhmd->bhld", q_features, context) / (normaliser[..., None] + eps)


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    return F.elu(x) + 1.0


@gin.configurable
class LinearAttention(nn.Module):
    """Softmax replaced by the positive kernel elu(q)+1 . elu(k)+1; no L x L matrix."""

    cross_attention = True

    def __init__(self, *, num_heads: int, head_dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        return kernel_attention(elu_feature_map(q), elu_feature_map(k), v, key_mask, self.eps)
