"""A two-tower (dual encoder) classifier for document matching, as in LRA's Retrieval task.

One shared encoder reads both documents separately (no cross-attention), so the task tests
how well each tower compresses a long document; the pair is classified from
[u, v, u * v, u - v] by an MLP (Tay et al. 2021, appendix A.1.3).
"""
from __future__ import annotations

from typing import Callable, Sequence

import gin
import torch
from torch import nn

from engine.errors import ConfigError
from models.layers import make_head, pool
from models.transformer import TransformerClassifier


@gin.configurable
class TwoTowerClassifier(nn.Module):
    """Classifies a pair of token sequences; returns {'logits': (batch, num_classes)}.

    `encoder` builds the shared tower (a TransformerClassifier configured by its own gin
    bindings, so attention variants swap in exactly as for single-input tasks); its own
    classification head is dropped. The head widths default to LRA's code,
    Dense(mlp) -> ReLU -> Dense(mlp / 2) -> ReLU -> Dense(classes), with mlp = 512.
    """

    def __init__(self, *, encoder: Callable[[], nn.Module] = TransformerClassifier, num_classes: int = 2,
                 head_hidden: Sequence[int] = (512, 256)) -> None:
        super().__init__()
        tower = encoder()
        if not isinstance(tower, TransformerClassifier):
            raise ConfigError(f"TwoTowerClassifier.encoder must build a TransformerClassifier, "
                              f"got {type(tower).__name__}")
        tower.head = nn.Identity()  # the pair head below classifies; an unused head would idle in DDP
        self.tower = tower
        d_model = tower.norm.normalized_shape[0]
        self.head = make_head(4 * d_model, num_classes, head_hidden)

    def embed(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, length) tokens -> (batch, d_model) pooled document representation."""
        states, mask = self.tower.encode(tokens, mask)
        return pool(states, mask, self.tower.pooling)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None,
                tokens2: torch.Tensor | None = None, mask2: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if tokens2 is None:
            raise ValueError("TwoTowerClassifier needs two documents: model(tokens, mask, tokens2, mask2)")
        if tokens.shape == tokens2.shape and (mask is None) == (mask2 is None):
            # One pass through the shared tower for both documents: the same maths, half the calls.
            both = self.embed(torch.cat([tokens, tokens2]), None if mask is None else torch.cat([mask, mask2]))
            u, v = both.chunk(2)
        else:
            u, v = self.embed(tokens, mask), self.embed(tokens2, mask2)
        return {"logits": self.head(torch.cat([u, v, u * v, u - v], dim=-1))}
