"""A CLIP-style dual encoder: an image tower and a text tower projected into one embedding space,
compared by cosine similarity scaled by a learned temperature (Radford et al. 2021).

The image tower is any staged classifier (ViT, SmallCNN, MLP) built with `num_classes =
embed_dim`, so its head is the image projection; the text tower is a TextTransformer.
"""
from __future__ import annotations

import math
from typing import Callable

import gin
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import require
from models.text_transformer import TextTransformer


def symmetric_contrastive_loss(logits: torch.Tensor) -> torch.Tensor:
    """InfoNCE in both directions for (n, n) similarity logits whose diagonal holds the pairs."""
    targets = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))


@gin.configurable
class CLIP(nn.Module):
    """Returns {'logits': (images, texts) scaled cosine similarities} for `model(images, tokens)`."""

    def __init__(self, *, image_tower: Callable[..., nn.Module] = gin.REQUIRED,
                 text_tower: Callable[..., nn.Module] = TextTransformer, embed_dim: int = 64,
                 temperature: float = 0.07, max_logit_scale: float = 100.0) -> None:
        super().__init__()
        require(embed_dim > 0, f"CLIP.embed_dim must be positive, got {embed_dim}")
        require(0 < temperature and 1 / temperature <= max_logit_scale,
                f"CLIP.temperature = {temperature} must be positive and at least 1 / max_logit_scale")
        self.embed_dim = embed_dim
        self.image = image_tower(num_classes=embed_dim)  # the tower's head is the image projection
        self.text = text_tower()
        require(isinstance(self.text, TextTransformer),
                f"CLIP.text_tower must build a TextTransformer, got {type(self.text).__name__}")
        self.text_projection = nn.Linear(self.text.d_model, embed_dim, bias=False)
        nn.init.normal_(self.text_projection.weight, std=self.text.d_model ** -0.5)
        # One element, not a 0-d tensor: FSDP2 cannot shard a scalar parameter.
        self.logit_scale = nn.Parameter(torch.tensor([math.log(1 / temperature)]))
        self.max_log_scale = math.log(max_logit_scale)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "logit_scale"
        if key in state_dict and state_dict[key].dim() == 0:  # written before logit_scale was 1-d
            state_dict[key] = state_dict[key].reshape(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def scale(self) -> torch.Tensor:
        """exp(logit_scale) (a 0-d tensor), clipped at max_logit_scale as in CLIP so training stays stable."""
        return self.logit_scale.clamp(max=self.max_log_scale).exp()[0]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(batch, C, H, W) -> (batch, embed_dim) unit vectors."""
        return F.normalize(self.image(images)["logits"], dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(batch, length) token ids -> (batch, embed_dim) unit vectors."""
        return F.normalize(self.text_projection(self.text(tokens)), dim=-1)

    def token_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        """The text tower's input embeddings of `tokens`, where soft prompts are written."""
        return self.text.embed(tokens)

    def encode_text_embeddings(self, embeddings: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        """Text unit vectors from input embeddings (learned prompts), read out at positions `end`."""
        return F.normalize(self.text_projection(self.text.encode_embeddings(embeddings, end)), dim=-1)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        image = self.encode_image(images)
        text = self.encode_text(tokens)
        scale = self.scale()
        return {"logits": scale * image @ text.t(), "image_embeds": image, "text_embeds": text,
                "logit_scale": scale.detach()}
