"""An LSTM sequence classifier: embeddings, stacked LSTM layers, a linear head on the state at
the last real token. The recurrent model whose inductive bias (sequential, recency-ordered
processing) Abnar et al. distil into Transformers on subject-verb agreement.
"""
from __future__ import annotations

from typing import Sequence

import gin
import torch
from torch import nn

from engine.errors import require


@gin.configurable
class LSTMClassifier(nn.Module):
    """Reads right-padded tokens left to right; returns {'logits': (batch, num_classes)}.

    Layers are separate `nn.LSTM`s so `features` can return every layer's final state.
    """

    def __init__(self, *, vocab_size: int, num_classes: int, d_embed: int = 32, d_hidden: int = 64,
                 num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        require(vocab_size > 0 and num_classes > 1, "vocab_size must be positive and num_classes > 1")
        require(num_layers >= 1, f"num_layers must be >= 1, got {num_layers}")
        require(d_embed > 0 and d_hidden > 0, f"d_embed and d_hidden must be positive, got {d_embed}, {d_hidden}")
        self.embed = nn.Embedding(vocab_size, d_embed)
        sizes = [d_embed] + [d_hidden] * num_layers
        self.layers = nn.ModuleList(nn.LSTM(a, b, batch_first=True) for a, b in zip(sizes, sizes[1:]))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(d_hidden, num_classes)

    @staticmethod
    def last_positions(tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Index of each row's last real token (right padding: real tokens come first)."""
        if mask is None:
            return torch.full((tokens.shape[0],), tokens.shape[1] - 1, device=tokens.device, dtype=torch.long)
        return (mask.long().sum(dim=1) - 1).clamp_min(0)

    def states(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Each layer's final state, (batch, d_hidden), read at the last real token.

        Padding comes after the last real token, so a left-to-right LSTM's state there has
        never seen it.
        """
        last = self.last_positions(tokens, mask)
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        x = self.dropout(self.embed(tokens))
        out = []
        for layer in self.layers:
            x, _ = layer(x)
            out.append(x[rows, last])
            x = self.dropout(x)
        return out

    def features(self, tokens: torch.Tensor, mask: torch.Tensor | None = None,
                 layers: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """`layer_k`: layer k's final state; `pre_logits`: what the head reads."""
        states = self.states(tokens, mask)
        wanted = set(range(1, len(states) + 1) if layers is None else layers)
        out = {f"layer_{k}": state for k, state in enumerate(states, start=1) if k in wanted}
        out["pre_logits"] = states[-1]
        return out

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"logits": self.head(self.dropout(self.states(tokens, mask)[-1]))}
