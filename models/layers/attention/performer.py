"""Performer attention (Choromanski et al., 2021): FAVOR+ random features approximating softmax, O(L m d).

phi(x) = exp(w^T x - |x|^2 / 2) / sqrt(m) with orthogonal Gaussian w (rows rescaled to Gaussian
norms), redrawn every `redraw_interval` training calls; or the generalized ReLU kernel
phi(x) = ReLU(w^T x) + eps, with `random_features=False` giving LRA's deterministic ReLU(x) + eps.
"""
from __future__ import annotations

import math

import gin
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import require
from models.layers.attention.linear import kernel_attention
from models.layers.attention.masking import real_mask

KERNELS = ("softmax", "relu")


def orthogonal_gaussian(rows: int, dim: int, orthogonal: bool = True) -> torch.Tensor:
    """(rows, dim) features: blocks of orthonormal rows, each rescaled to the norm of a Gaussian row."""
    if not orthogonal:
        return torch.randn(rows, dim)
    blocks = []
    for _ in range(math.ceil(rows / dim)):
        q, r = torch.linalg.qr(torch.randn(dim, dim))
        # Fixing the signs by diag(R) makes Q uniformly (Haar) distributed; raw QR output is not,
        # and the estimator is then biased.
        blocks.append((q * torch.sign(torch.diagonal(r))).T)
    directions = torch.cat(blocks)[:rows]
    return directions * torch.randn(rows, dim).norm(dim=1, keepdim=True)


@gin.configurable
class PerformerAttention(nn.Module):
    """Kernelised attention with random features: `kernel='softmax'` is FAVOR+, 'relu' the ReLU kernel."""

    def __init__(self, *, num_heads: int, head_dim: int, kernel: str = "softmax", num_features: int = 256,
                 orthogonal: bool = True, redraw_interval: int = 1, random_features: bool = True,
                 relu_eps: float = 1e-3, eps: float = 1e-6) -> None:
        super().__init__()
        require(kernel in KERNELS, f"PerformerAttention.kernel must be one of {KERNELS}, got {kernel!r}")
        require(num_features >= 1, f"PerformerAttention.num_features must be >= 1, got {num_features}")
        require(redraw_interval >= 0, f"PerformerAttention.redraw_interval must be >= 0 (0 = never), got {redraw_interval}")
        require(kernel == "relu" or random_features, "FAVOR+ (kernel='softmax') needs random_features = True")
        self.kernel, self.head_dim, self.num_features = kernel, head_dim, num_features
        self.orthogonal, self.redraw_interval, self.random_features = orthogonal, redraw_interval, random_features
        self.relu_eps, self.eps = relu_eps, eps
        self.calls = 0
        # One projection shared by the heads, saved with the model so evaluation after a restore
        # sees the features the model was last trained with.
        self.register_buffer("projection", orthogonal_gaussian(num_features, head_dim, orthogonal))

    @torch.no_grad()
    def redraw(self) -> None:
        self.projection.copy_(orthogonal_gaussian(self.num_features, self.head_dim, self.orthogonal))

    def softmax_features(self, x: torch.Tensor, is_query: bool, mask: torch.Tensor) -> torch.Tensor:
        x = x * self.head_dim ** -0.25  # so that phi(q) . phi(k) estimates exp(q . k / sqrt(d))
        exponent = x @ self.projection.T - (x * x).sum(dim=-1, keepdim=True) / 2
        # Subtracting a maximum keeps exp() finite; it cancels between numerator and normaliser:
        # per query row for queries, one constant over the real keys for keys.
        if is_query:
            stabiliser = exponent.amax(dim=-1, keepdim=True)
        else:
            real = mask[:, None, :, None]
            stabiliser = exponent.masked_fill(~real, float("-inf")).amax(dim=(-1, -2), keepdim=True)
        return torch.exp(exponent - stabiliser.detach()) / math.sqrt(self.num_features)

    def relu_features(self, x: torch.Tensor) -> torch.Tensor:
        projected = x @ self.projection.T if self.random_features else x
        return F.relu(projected) + self.relu_eps

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.training and self.random_features and self.redraw_interval:
            if self.calls and self.calls % self.redraw_interval == 0:
                self.redraw()
            self.calls += 1
        if self.kernel == "relu":
            return kernel_attention(self.relu_features(q), self.relu_features(k), v, key_mask, self.eps)
        mask = real_mask(key_mask, k.shape[0], k.shape[2], k.device)
        return kernel_attention(self.softmax_features(q, True, mask), self.softmax_features(k, False, mask),
                                v, key_mask, self.eps)
