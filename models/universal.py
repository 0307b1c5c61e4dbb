"""Universal Transformers: one shared block applied recurrently, with fixed depth or ACT halting.

`UniversalTransformerClassifier` reads token sequences (C-PVR, PVR); `UniversalViT` reads image
patches (U-ViT). The step block is a gin factory (`block = @TransformerBlock` by default), so
Hyper-UT is the same model with hyper-module blocks (models/hyperut.py).
"""
from __future__ import annotations

from typing import Any, Callable

import gin
import torch
from torch import nn

from engine.errors import require
from models.layers import (AdaptiveComputationTime, PonderResult, RecurrentEncoder, TransformerBlock, check_pooling,
                           make_positions, pool)
from models.vit import ViT


class PonderingEncoder(nn.Module):
    """The recurrent encoder plus what a classifier reports from it (ponder, aux loss, diagnostics)."""

    #: Its block runs a data-dependent number of times (ACT; ranks may differ): sharding engines
    #: gather this module's weights once per call, never per block call (FSDP shards it as one
    #: block, ZeRO-3 fetches it as a leaf), which is why classifiers call it through forward.
    shard_as_one = True

    def __init__(self, block: Callable[..., nn.Module], *, d_model: int, num_heads: int, d_ff: int | None,
                 dropout: float, max_steps: int, act: bool, halting_level: str, halting_bias_init: float,
                 act_epsilon: float, ponder_weight: float, shrink_batch: bool) -> None:
        super().__init__()
        require(d_model % num_heads == 0, f"num_heads = {num_heads} does not divide d_model = {d_model}")
        require(ponder_weight >= 0, f"ponder_weight must be >= 0, got {ponder_weight!r}")
        halting = AdaptiveComputationTime(d_model, max_steps=max_steps, epsilon=act_epsilon,
                                          halting_bias_init=halting_bias_init, level=halting_level,
                                          shrink_batch=shrink_batch) if act else None
        self.recurrent = RecurrentEncoder(block(d_model, num_heads, d_ff or 4 * d_model, dropout=dropout), d_model,
                                          max_steps=max_steps, act=halting)
        self.ponder_weight = ponder_weight

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *,
                report: bool = False) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        """Final states (the staged-model view), or with `report` what `run` returns. Classifiers
        call it here, not `run`: FSDP shards this module as one block (U-ViT's only stage) and
        gathers its weights in forward."""
        if report:
            return self.run(x, mask)
        return self.recurrent(x, mask)

    def run(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Final states (B, L, d) and the outputs a classifier adds to its logits."""
        result, extras = self.recurrent.run(x, mask)
        return result.output, self.report(result, extras)

    def report(self, result: PonderResult, extras: list) -> dict[str, Any]:
        steps = result.per_example(result.steps)
        out: dict[str, Any] = {"ponder": steps.detach(), "ponder_map": result.steps.detach()}
        diagnostics = {"ponder_max": result.steps.max().detach()}
        if self.recurrent.act is not None:
            cost = result.per_example(result.ponder_cost).mean()
            out["aux_loss"] = self.ponder_weight * cost
            diagnostics["ponder_cost"] = cost.detach()
        summarize = getattr(self.recurrent.block, "diagnostics", None)
        if callable(summarize):
            diagnostics.update(summarize(extras))
        out["diagnostics"] = diagnostics
        return out


_ENCODER_ARGS = ("d_model", "num_heads", "d_ff", "dropout", "max_steps", "act", "halting_level",
                 "halting_bias_init", "act_epsilon", "ponder_weight", "shrink_batch")


@gin.configurable
class UniversalTransformerClassifier(nn.Module):
    """UT over tokens with a CLS token: embed -> shared block x steps (fixed or ACT) -> norm -> pool -> head.

    Returns {'logits', 'ponder' (per-example mean updates), 'ponder_map' (updates per position),
    'aux_loss' (ponder_weight * mean N + R, with ACT), 'diagnostics'}.
    """

    default_block: Callable[..., nn.Module] = TransformerBlock

    def __init__(self, *, vocab_size: int, num_classes: int, max_len: int, d_model: int = 64, num_heads: int = 4,
                 d_ff: int | None = None, dropout: float = 0.0, pooling: str = "cls", positions: str = "learned",
                 max_steps: int = 8, act: bool = True, halting_level: str = "per_token",
                 halting_bias_init: float = -1.0, act_epsilon: float = 0.01, ponder_weight: float = 0.01,
                 shrink_batch: bool = True, block: Callable[..., nn.Module] | None = None) -> None:
        super().__init__()
        require(vocab_size > 0 and num_classes > 1, "vocab_size must be positive and num_classes > 1")
        check_pooling(pooling)
        settings = dict(locals())
        self.pooling = pooling
        self.cls_id = vocab_size
        self.embed = nn.Embedding(vocab_size + 1, d_model)  # the extra row is the CLS token
        self.positions = make_positions(positions, max_len + 1, d_model)
        self.dropout = nn.Dropout(dropout)
        self.encoder = PonderingEncoder(block or self.default_block, **{k: settings[k] for k in _ENCODER_ARGS})
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, Any]:
        x = self.embed(torch.cat([torch.full_like(tokens[:, :1], self.cls_id), tokens], dim=1))
        if mask is not None:
            mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1).bool()
        hidden, report = self.encoder(self.dropout(self.positions(x)), mask, report=True)
        return {"logits": self.head(pool(self.norm(hidden), mask, self.pooling)), **report}


@gin.configurable
class UniversalViT(ViT):
    """U-ViT: the ViT stem and head around a recurrent encoder, per-example ACT by default.

    As a staged model it has one stage, the whole recurrent encoder.
    """

    default_block: Callable[..., nn.Module] = TransformerBlock

    def __init__(self, *, image_size: int, patch_size: int, num_classes: int, channels: int = 3,
                 d_model: int = 64, num_heads: int = 4, d_ff: int | None = None, dropout: float = 0.0,
                 pooling: str = "cls", max_steps: int = 8, act: bool = True, halting_level: str = "per_example",
                 halting_bias_init: float = -1.0, act_epsilon: float = 0.01, ponder_weight: float = 0.01,
                 shrink_batch: bool = True, block: Callable[..., nn.Module] | None = None) -> None:
        settings = dict(locals())
        super().__init__(image_size=image_size, patch_size=patch_size, num_classes=num_classes, channels=channels,
                         d_model=d_model, num_heads=num_heads, num_layers=0, dropout=dropout, pooling=pooling)
        # Registered once, as the only stage, so checkpoints hold each tensor under one name.
        self.stages = nn.ModuleList([PonderingEncoder(block or self.default_block,
                                                      **{k: settings[k] for k in _ENCODER_ARGS})])

    @property
    def encoder(self) -> PonderingEncoder:
        return self.stages[0]

    def forward(self, images: torch.Tensor, **partial: int | None) -> dict[str, Any] | torch.Tensor:
        """`to_layer` / `from_layer` give the staged model's partial passes (StagedModel.forward)."""
        if any(value is not None for value in partial.values()):
            return super().forward(images, **partial)
        hidden, report = self.encoder(self.stem(images), report=True)
        return {"logits": self.head(self.readout(hidden)), **report}
