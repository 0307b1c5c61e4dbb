"""The staged-model interface: stem -> stages -> head, so callers can stop or restart midway.

GIFT mixes hidden representations of two inputs at a chosen layer, distillation compares
per-layer representations, and few-shot probes read any layer: all through `hidden` and
`resume` rather than model-specific hooks.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class StagedModel(nn.Module):
    """Subclasses define `stem`, `stages` (an nn.ModuleList), `readout` (hidden -> pooled
    representation) and `head` (representation -> logits)."""

    stem: nn.Module
    stages: nn.ModuleList
    head: nn.Module

    def readout(self, hidden: torch.Tensor) -> torch.Tensor:
        """The pooled representation of a hidden state (identity for flat hidden states)."""
        return hidden

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def hidden(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """The hidden state after `layer` stages (0 = after the stem)."""
        h = self.stem(x)
        for stage in self.stages[:layer]:
            h = stage(h)
        return h

    def resume(self, hidden: torch.Tensor, layer: int) -> dict[str, torch.Tensor]:
        """Logits from a hidden state taken after `layer` stages."""
        for stage in self.stages[layer:]:
            hidden = stage(hidden)
        return {"logits": self.head(self.readout(hidden))}

    def features(self, x: torch.Tensor, layers: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """Pooled representation after each wanted stage (`layer_k`) plus `pre_logits`."""
        wanted = set(range(1, self.num_stages + 1) if layers is None else layers)
        out = {}
        h = self.stem(x)
        for index, stage in enumerate(self.stages, start=1):
            h = stage(h)
            if index in wanted:
                out[f"layer_{index}"] = self.readout(h).flatten(1)
        out["pre_logits"] = self.readout(h).flatten(1)
        return out

    def forward(self, x: torch.Tensor, *, to_layer: int | None = None,
                from_layer: int | None = None) -> dict[str, torch.Tensor] | torch.Tensor:
        """Logits of inputs `x`; with `to_layer`, `hidden(x, to_layer)` instead; with `from_layer`,
        `resume(x, from_layer)` of a hidden state `x`. Partial passes go through forward so that a
        distributed wrapper (DDP, FSDP, DeepSpeed) gathers the weights and synchronises the gradients."""
        if to_layer is not None:
            return self.hidden(x, to_layer)
        if from_layer is not None:
            return self.resume(x, from_layer)
        return self.resume(self.stem(x), 0)
