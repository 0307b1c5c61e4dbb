"""Linear Transformer attention (Katharopoulos et al., 2020) with the feature map elu(x) + 1, O(L d^2).

y_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i)^T sum_j phi(k_j) + eps). The kernelised form
is shared with the Performer (performer.py), which swaps in random features.
"""
from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from torch import nn


def kernel_attention(q_features: torch.Tensor, k_features: torch.Tensor, v: torch.Tensor,
                     key_mask: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Non-causal attention with positive features phi(q), phi(k) (batch, heads, length, m).

    The normaliser rides along as one more column of the (m, d) context: [phi(K)^T V, sum_j phi(k_j)],
    so one product with phi(Q) gives numerator and normaliser together, and one product's
    backward carries the normaliser's gradient (no separate (L, m) passes for it).
    """
    if key_mask is not None:  # padded keys add nothing to the context or the normaliser
        k_features = k_features * key_mask[:, None, :, None].bool().to(k_features.dtype)
    context = torch.cat([k_features.transpose(-1, -2) @ v, k_features.sum(dim=-2).unsqueeze(-1)], dim=-1)
    numerator, normaliser = (q_features @ context).split([v.shape[-1], 1], dim=-1)  # (b, h, L, d + 1)
    return numerator * (normaliser + eps).reciprocal()


class _EluPlusOne(torch.autograd.Function):
    """elu(x) + 1 with a backward from the output: the derivative is 1 where x > 0 (there phi > 1)
    and exp(x) = phi where x <= 0, i.e. min(phi, 1); cheaper than autograd's elu_backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        # A contiguous result: the products that follow would otherwise copy the heads' strided view.
        phi = x.contiguous() if not x.is_contiguous() else x.clone()
        F.elu(phi, inplace=True).add_(1.0)
        ctx.save_for_backward(phi)
        return phi

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        phi, = ctx.saved_tensors
        return phi.clamp(max=1.0).mul_(grad)


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    return _EluPlusOne.apply(x)


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
