"""CLIP's text tower: a causal Transformer over token ids, read out at the end-of-text token.

It also encodes token *embeddings*, so prompt learners (CoOp, CoCoOp, AAPE) can put learned
context vectors in front of a class name and back-propagate through the frozen tower.
"""
from __future__ import annotations

import functools

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers import DenseAttention, LearnedPositions, TransformerBlock


def first_match(tokens: torch.Tensor, value: int) -> torch.Tensor:
    """(batch, length) -> (batch,) index of the first `value` in each row (0 where there is none)."""
    return (tokens == value).int().argmax(dim=-1)


@gin.configurable
class TextTransformer(nn.Module):
    """Token + learned position embeddings, causal pre-norm blocks, a final LayerNorm; the
    sequence is represented by the state at its first `eos_id` token (as in CLIP).

    Causal attention makes padding after the end-of-text token invisible to it, so no padding
    mask is needed. `eos_is_max_id` reads out at the largest id instead, as Hugging Face does
    for CLIP configurations older than its eos_token_id fix (the end-of-text token is the
    largest id of OpenAI's vocabulary).
    """

    def __init__(self, *, vocab_size: int, max_len: int, eos_id: int, d_model: int = 64, num_heads: int = 4,
                 num_layers: int = 2, d_ff: int | None = None, dropout: float = 0.0,
                 activation_name: str = "gelu", eos_is_max_id: bool = False) -> None:
        super().__init__()
        require(vocab_size > 0 and max_len > 0, f"vocab_size and max_len must be positive, got {vocab_size}, {max_len}")
        require(0 <= eos_id < vocab_size, f"eos_id = {eos_id} is outside the vocabulary of {vocab_size} tokens")
        require(d_model % num_heads == 0, f"num_heads = {num_heads} does not divide d_model = {d_model}")
        self.d_model = d_model
        self.eos_id = eos_id
        self.eos_is_max_id = eos_is_max_id
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.positions = LearnedPositions(max_len, d_model)
        self.dropout = nn.Dropout(dropout)
        causal = functools.partial(DenseAttention, causal=True)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, num_heads, d_ff or 4 * d_model, dropout=dropout,
                                                     activation_name=activation_name, attention=causal)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    @property
    def max_len(self) -> int:
        return self.positions.table.shape[0]

    def end_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """Where each row is read out: its first end-of-text token (or its largest id)."""
        if self.eos_is_max_id:
            return tokens.int().argmax(dim=-1)
        return first_match(tokens, self.eos_id)

    def encode_embeddings(self, x: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """(batch, length, d_model) input embeddings -> (batch, d_model) states at positions `end`."""
        x = self.dropout(self.positions(x))
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return x[torch.arange(x.shape[0], device=x.device), end]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(batch, length) token ids -> (batch, d_model) sequence representations."""
        return self.encode_embeddings(self.embed(tokens), self.end_positions(tokens))
