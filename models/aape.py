"""AAPE: Aggregate-and-Adapt Prompt Embedding (Huang et al., NeurIPS 2024), on a frozen CLIP.

While training, an aggregator attends from the image embedding f(x) over the embeddings of the
image's class descriptions (LLM prompts) to an image-aligned summary p(x); a generator h maps
f(x) to a prompt embedding a(x) = h(f(x)) that conditions the class prompts, and is trained on
the task loss + lambda * |a(x) - sg(p(x))|^2 (unit vectors). At test time only h runs: no
description is read.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import gin
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import require
from models.clip import CLIP, symmetric_contrastive_loss
from models.prompting import ImageConditionedPrompts


CONDITIONING = ("context", "class_embedding")
AGGREGATORS = ("attention", "mean")


class DescriptionAggregator(nn.Module):
    """Multi-head attention with the image embedding as the query and the description embeddings
    as keys and values; the values are the description embeddings themselves (no value or output
    projection), so the summary stays a convex combination of real text embeddings.

    The weights of the heads are averaged into one distribution over descriptions; padded
    descriptions (mask False) get weight zero. Permutation-invariant in the descriptions.
    With `init_scale`, the query and key projections start as scaled identities, so each head
    starts by scoring `init_scale` x (image . description) on its slice of the embedding: CLIP's
    own similarity, which already gives distractors little weight; training refines it.
    `kind = 'mean'` is the paper's weaker ablation: uniform weights over the real descriptions.
    """

    def __init__(self, embed_dim: int, num_heads: int = 4, init_scale: float | None = None,
                 kind: str = "attention") -> None:
        super().__init__()
        require(kind in AGGREGATORS, f"AAPE.aggregator must be one of {AGGREGATORS}, got {kind!r}")
        self.kind = kind
        require(num_heads >= 1 and embed_dim % num_heads == 0,
                f"the aggregator's num_heads = {num_heads} must divide embed_dim = {embed_dim}")
        require(init_scale is None or init_scale > 0, f"the aggregator's init_scale must be positive, got {init_scale}")
        self.num_heads = num_heads
        if kind == "mean":
            return  # nothing to learn: the summary is the mean of the real descriptions
        self.query = nn.Linear(embed_dim, embed_dim)
        self.key = nn.Linear(embed_dim, embed_dim)
        if init_scale is not None:
            gain = math.sqrt(init_scale * math.sqrt(embed_dim // num_heads))  # gain^2 / sqrt(d_head) = init_scale
            for projection in (self.query, self.key):
                nn.init.eye_(projection.weight)
                projection.weight.data.mul_(gain)
                nn.init.zeros_(projection.bias)

    def weights(self, image: torch.Tensor, descriptions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, E) queries, (B, N, E) descriptions, (B, N) mask -> (B, N) weights summing to one."""
        if self.kind == "mean":
            valid = mask.to(descriptions.dtype)
            return valid / valid.sum(dim=-1, keepdim=True)
        batch, count, dim = descriptions.shape
        head = dim // self.num_heads
        q = self.query(image).view(batch, self.num_heads, head)
        k = self.key(descriptions).view(batch, count, self.num_heads, head)
        scores = torch.einsum("bhd,bnhd->bhn", q, k) / math.sqrt(head)
        scores = scores.masked_fill(~mask.bool()[:, None, :], float("-inf"))
        return scores.softmax(dim=-1).mean(dim=1)

    def forward(self, image: torch.Tensor, descriptions: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The summary p(x) (B, E) and the weights (B, N)."""
        weights = self.weights(image, descriptions, mask)
        return torch.einsum("bn,bne->be", weights, descriptions), weights


@gin.configurable
class AAPE(ImageConditionedPrompts):
    """Prompt learner whose image-conditioned prompt a(x) is distilled from aggregated descriptions.

    a(x) = generator(f(x)) lives in the joint embedding space (where the summaries live); a
    learned linear map, zero at the start, turns it into the offset added to every context vector
    (CoCoOp's place for an image-conditioned prompt). `distill_weight` is lambda; the aggregator
    is trained by InfoNCE between p(x) and f(x) over the batch ("CLIP reward"), weighted by
    `aggregator_weight`. Both losses come back as the (already weighted) 'aux_loss'.
    `aggregator = 'mean'` replaces the attention by the plain mean of the descriptions (ablation).
    """

    def __init__(self, *, clip: Callable[[], CLIP] = CLIP, context_length: int = 4, init: str = "template",
                 generator_hidden: int = 128, aggregator_heads: int = 4, distill_weight: float = 1.0,
                 aggregator_weight: float = 1.0, aggregator_init_scale: float | None = 20.0,
                 conditioning: str = "context", aggregator: str = "attention") -> None:
        super().__init__(clip=clip, context_length=context_length, init=init)
        require(conditioning in CONDITIONING, f"AAPE.conditioning must be one of {CONDITIONING}, got {conditioning!r}")
        self.conditioning = conditioning
        require(distill_weight >= 0 and aggregator_weight >= 0,
                f"AAPE.distill_weight and aggregator_weight must be >= 0, got {distill_weight}, {aggregator_weight}")
        require(generator_hidden >= 1, f"AAPE.generator_hidden must be >= 1, got {generator_hidden}")
        embed = self.clip.embed_dim
        self.distill_weight = distill_weight
        self.aggregator_weight = aggregator_weight
        self.generator = nn.Sequential(nn.Linear(embed, generator_hidden), nn.GELU(),
                                       nn.Linear(generator_hidden, embed))
        width = self.clip.text.d_model if conditioning == "context" else embed
        self.to_context = nn.Linear(embed, width)
        nn.init.zeros_(self.to_context.weight)
        nn.init.zeros_(self.to_context.bias)
        self.aggregator = DescriptionAggregator(embed, aggregator_heads, aggregator_init_scale, kind=aggregator)

    def forward(self, images: torch.Tensor, names: torch.Tensor, template: torch.Tensor, *,
                labels: torch.Tensor | None = None, descriptions: torch.Tensor | None = None,
                description_mask: torch.Tensor | None = None, **unused: Any) -> dict[str, torch.Tensor]:
        """Test time: `model(images, names, template)`. Training adds `labels` (B,) and the
        descriptions of every training class: tokens (classes, N, length) and mask (classes, N)."""
        image = self.image_features(images)
        prompt = self.generator(image)
        if self.conditioning == "context":
            logits = self.conditioned_logits(image, self.to_context(prompt), names, template)
        else:  # w_c(x) = norm(t_c + P a(x)): one text pass per class, not per (image, class)
            classes = self.class_embeddings(self.base_context(template), names)
            weights = F.normalize(classes.unsqueeze(0) + self.to_context(prompt).unsqueeze(1), dim=-1)
            logits = self.logits(image, weights)
        out = {"logits": logits, "prompt_embedding": prompt}
        if descriptions is None:
            return out
        require(labels is not None and description_mask is not None,
                "AAPE needs labels and description_mask together with descriptions")
        classes, count, length = descriptions.shape
        texts = self.encode_texts(descriptions.reshape(classes * count, length)).view(classes, count, -1)
        summary, weights = self.aggregator(image, texts[labels], description_mask[labels])
        summary = F.normalize(summary, dim=-1)
        aggregator_loss = symmetric_contrastive_loss(self.clip.scale() * summary @ image.t())
        distill = (F.normalize(prompt, dim=-1) - summary.detach()).pow(2).sum(dim=-1).mean()
        out.update(aux_loss=self.distill_weight * distill + self.aggregator_weight * aggregator_loss,
                   distill=distill.detach(), aggregator_loss=aggregator_loss.detach(),
                   description_weights=weights.detach())
        return out
