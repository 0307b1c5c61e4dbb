"""Transformer encoder classifier: token + position embeddings, pre-norm blocks, CLS or mean pooling."""
from __future__ import annotations

from typing import Sequence

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers import TransformerBlock, check_pooling, make_head, make_positions, pool


@gin.configurable
class TransformerClassifier(nn.Module):
    """Encodes a token sequence and classifies it; returns {'logits': (batch, num_classes)}."""

    def __init__(self, *, vocab_size: int, num_classes: int, max_len: int, d_model: int = 128,
                 num_heads: int = 4, num_layers: int = 2, d_ff: int | None = None, dropout: float = 0.0,
                 pooling: str = "cls", positions: str = "learned", cls_token: bool = True,
                 head_hidden: Sequence[int] = ()) -> None:
        """`cls_token = False` encodes the tokens alone (mean pooling as in LRA's Pathfinder);
        `head_hidden` widths give an MLP head (LRA: pool -> Dense(d_ff) -> ReLU -> Dense)."""
        super().__init__()
        require(vocab_size > 0 and num_classes > 1, "vocab_size must be positive and num_classes > 1")
        require(num_layers >= 1, f"num_layers must be >= 1, got {num_layers}")
        require(d_model % num_heads == 0, f"num_heads = {num_heads} does not divide d_model = {d_model}")
        check_pooling(pooling)
        require(cls_token or pooling != "cls", "pooling = 'cls' needs cls_token = True")
        self.pooling = pooling
        self.cls_token = cls_token
        self.embed = nn.Embedding(vocab_size + int(cls_token), d_model)  # the extra row is the CLS token
        self.cls_id = vocab_size
        self.positions = make_positions(positions, max_len + 1, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, num_heads, d_ff or 4 * d_model, dropout=dropout)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = make_head(d_model, num_classes, head_hidden)

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor | None = None,
               keep: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(batch, length) tokens -> (batch, length + 1, d_model) states with the CLS token first
        (or (batch, length, d_model) without it, when `cls_token` is off); `keep` collects the
        states after each block."""
        if self.cls_token:
            cls = torch.full_like(tokens[:, :1], self.cls_id)
            tokens = torch.cat([cls, tokens], dim=1)
            if mask is not None:
                mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        x = self.embed(tokens)
        if mask is not None:
            mask = mask.bool()
        x = self.dropout(self.positions(x))
        for block in self.blocks:
            x = block(x, mask)
            if keep is not None:
                keep.append(x)
        return self.norm(x), mask

    def features(self, tokens: torch.Tensor, mask: torch.Tensor | None = None,
                 layers: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Pooled states after each wanted block (`layer_k`) and `pre_logits` (what the head
        reads), for representation probes such as CKA; the StagedModel interface's shape."""
        states: list[torch.Tensor] = []
        x, full_mask = self.encode(tokens, mask, keep=states)
        wanted = set(range(1, len(states) + 1) if layers is None else layers)
        out = {f"layer_{k}": pool(h, full_mask, self.pooling) for k, h in enumerate(states, start=1) if k in wanted}
        out["pre_logits"] = pool(x, full_mask, self.pooling)
        return out

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        x, mask = self.encode(tokens, mask)
        return {"logits": self.head(pool(x, mask, self.pooling))}
