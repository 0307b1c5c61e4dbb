"""Mixture of softmaxes output layer (Yang et al. 2018): K softmaxes over the vocabulary,
mixed by a context-dependent prior, which lifts the softmax bottleneck's rank limit.

It returns log-probabilities, which are valid logits (their log-softmax is themselves), so the
usual cross-entropy applies unchanged.
"""
from __future__ import annotations

import gin
import torch
from torch import nn

from engine.errors import require


@gin.configurable
class MixtureOfSoftmaxes(nn.Module):
    """(batch, length, d_model) states + an output embedding (vocab, d) -> (batch, length, vocab)."""

    def __init__(self, d_model: int, d_embedding: int | None = None, *, num_components: int = 4) -> None:
        super().__init__()
        require(num_components >= 1, f"MixtureOfSoftmaxes.num_components must be >= 1, got {num_components}")
        self.num_components = num_components
        self.d_embedding = d_embedding or d_model
        self.prior = nn.Linear(d_model, num_components, bias=False)
        self.latent = nn.Linear(d_model, num_components * self.d_embedding, bias=False)

    def forward(self, h: torch.Tensor, output_embedding: torch.Tensor) -> torch.Tensor:
        log_prior = torch.log_softmax(self.prior(h).float(), dim=-1)                       # (B, L, K)
        latent = torch.tanh(self.latent(h)).unflatten(-1, (self.num_components, self.d_embedding))
        log_probs = torch.log_softmax((latent @ output_embedding.t()).float(), dim=-1)      # (B, L, K, V)
        return torch.logsumexp(log_probs + log_prior[..., None], dim=-2)
