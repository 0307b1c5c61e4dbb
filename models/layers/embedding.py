"""Token embeddings with an optional tied output projection and ALBERT's factorisation.

Factorised (`factor_dim = E`): a V x E table and an E -> d projection, so the embedding costs
V*E + E*d instead of V*d; the tied output reuses both (h -> E -> V).
"""
from __future__ import annotations

import torch
from torch import nn

from engine.errors import require


class TokenEmbedding(nn.Module):
    """ids -> (.., d_model) vectors, and states -> vocabulary logits (tied or untied)."""

    def __init__(self, vocab_size: int, d_model: int, *, tied: bool = True, factor_dim: int | None = None) -> None:
        super().__init__()
        require(vocab_size > 0, f"vocab_size must be positive, got {vocab_size}")
        require(factor_dim is None or factor_dim > 0, f"embedding factor_dim must be positive, got {factor_dim}")
        self.d_model = d_model
        self.tied = tied
        width = factor_dim or d_model
        self.table = nn.Embedding(vocab_size, width)
        nn.init.normal_(self.table.weight, std=1.0)
        self.project = nn.Linear(width, d_model, bias=False) if factor_dim else None
        self.unembed = None if tied else nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.table(ids)
        return self.project(x) if self.project is not None else x

    def output_matrix(self) -> torch.Tensor:
        """The (vocab, d_model) matrix whose product with states gives the logits."""
        if not self.tied:
            return self.unembed.weight
        table = self.table.weight if self.project is None else self.table.weight @ self.project.weight.t()
        return table * self.d_model ** -0.5

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        if not self.tied:
            return self.unembed(h)
        # Tied logits are scaled by d_model^-0.5 (Mesh TF T5), so they start near unit scale;
        # a factorised table maps h to its width first (cheaper than forming output_matrix()).
        if self.project is not None:
            h = h @ self.project.weight
        return (h * self.d_model ** -0.5) @ self.table.weight.t()
