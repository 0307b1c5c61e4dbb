"""Performer attention (Choromanski et al., 2021): FAVOR+ random features approximating softmax, O(L m d).

phi(x) = exp(w^T x - |x|^2 / 2) / sqrt(m) with orthogonal Gaussian w (rows rescaled to Gaussian
norms), redrawn every `redraw_interval` training steps; or the generalized ReLU kernel
phi(x) = ReLU(w^T x) + eps, with `random_features=False` giving LRA's deterministic ReLU(x) + eps.

A training step is an optimizer step, whatever loop takes it (every torch optimizer's `step`
ticks the clock below): the projection is redrawn at most once per step, at the first training
call after it, and never in place, so a weight-shared block called several times in one forward
(Universal Transformer, Hyper-UT, ACT) sees one projection and autograd keeps the one it saved.
Draw k is a pure function of (`feature_seed`, k), both saved with the step count: every rank
draws the same features and a resumed run redraws exactly as the uninterrupted one.
"""
from __future__ import annotations

import math

import gin
import torch
import torch.nn.functional as F
from torch import nn

from torch.optim.optimizer import register_optimizer_step_post_hook

from engine.errors import require
from models.layers.attention.linear import kernel_attention
from models.layers.attention.masking import real_mask

KERNELS = ("softmax", "relu")

#: Optimizer steps taken in this process, by any torch optimizer (DeepSpeed's and fairscale's
#: wrappers step a torch optimizer underneath): the clock that says a new training step began.
_optimizer_steps = 0


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


register_optimizer_step_post_hook(_count_optimizer_step)


def orthogonal_gaussian(rows: int, dim: int, orthogonal: bool = True,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """(rows, dim) features: blocks of orthonormal rows, each rescaled to the norm of a Gaussian row."""
    if not orthogonal:
        return torch.randn(rows, dim, generator=generator)
    blocks = []
    for _ in range(math.ceil(rows / dim)):
        q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
        # Fixing the signs by diag(R) makes Q uniformly (Haar) distributed; raw QR output is not,
        # and the estimator is then biased.
        blocks.append((q * torch.sign(torch.diagonal(r))).T)
    directions = torch.cat(blocks)[:rows]
    return directions * torch.randn(rows, dim, generator=generator).norm(dim=1, keepdim=True)


@gin.configurable
class PerformerAttention(nn.Module):
    """Kernelised attention with random features: `kernel='softmax'` is FAVOR+, 'relu' the ReLU kernel."""

    cross_attention = True

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
        # Drawn from the seeded torch RNG, so identical on every rank (the model is built after
        # seeding); with the step count it fixes every later projection.
        self.register_buffer("feature_seed", torch.randint(0, 2**62, ()))
        self.register_buffer("training_steps", torch.zeros((), dtype=torch.long))
        # One projection shared by the heads, saved with the model so evaluation after a restore
        # sees the features the model was last trained with.
        self.register_buffer("projection", self.draw(0))
        self._clock: int | None = None  # `_optimizer_steps` at the last training call

    def draw(self, index: int) -> torch.Tensor:
        """Projection number `index`: a pure function of the seed and the index."""
        generator = torch.Generator().manual_seed((int(self.feature_seed) + 1_000_003 * index) % 2**63)
        return orthogonal_gaussian(self.num_features, self.head_dim, self.orthogonal, generator)

    @torch.no_grad()
    def start_training_call(self) -> None:
        """Count a training step at the first training call after an optimizer step (or after
        construction or a restore) and redraw every `redraw_interval` steps, out of place."""
        if self._clock == _optimizer_steps:
            return  # the same step: another recurrent call, micro-batch or forward
        self._clock = _optimizer_steps
        self.training_steps += 1
        done = int(self.training_steps) - 1  # steps finished with earlier projections
        if done and done % self.redraw_interval == 0:
            self.projection = self.draw(done // self.redraw_interval).to(self.projection)

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
            self.start_training_call()
        if self.kernel == "relu":
            return kernel_attention(self.relu_features(q), self.relu_features(k), v, key_mask, self.eps)
        mask = real_mask(key_mask, k.shape[0], k.shape[2], k.device)
        return kernel_attention(self.softmax_features(q, True, mask), self.softmax_features(k, False, mask),
                                v, key_mask, self.eps)
