"""Prompt learning on a frozen CLIP: zero-shot prompts, CoOp (learned context vectors; Zhou et al.
2022) and CoCoOp (context conditioned on the image; Zhou et al. 2022b).

A prompt learner turns class names into class weights through the frozen text tower and scores
an image against them. Every learner is called as `model(images, names, template)`: `names`
(classes, length) are the class-name token ids ending in the end-of-text token, `template`
(T,) the hand-written prefix ("a photo of a"). Context vectors are the template's embeddings
plus a learned offset that starts at zero, so every learner starts as the zero-shot classifier.
"""
from __future__ import annotations

from typing import Any, Callable

import gin
import torch
from torch import nn

from engine.data import frozen
from engine.errors import require
from models.clip import CLIP


class PromptLearner(nn.Module):
    """A frozen CLIP (`requires_grad` False, always in eval mode) and learned prompts around it.

    `load_state_dict` also accepts the backbone's own weights (a CLIP pre-training checkpoint or
    its safetensors export, keys without the `clip.` prefix), so `train.init_from` can start
    prompt learning from the pre-trained towers; the learned prompt parameters then keep their
    initial values.
    """

    def __init__(self, *, clip: Callable[[], CLIP] = CLIP, context_length: int = 4,
                 init: str = "template") -> None:
        super().__init__()
        require(init in ("template", "random"), f"{type(self).__name__}.init must be 'template' or 'random', got {init!r}")
        require(context_length >= 1, f"{type(self).__name__}.context_length must be >= 1, got {context_length}")
        self.clip = clip()
        require(isinstance(self.clip, CLIP), f"{type(self).__name__}.clip must build a CLIP, got {type(self.clip).__name__}")
        frozen(self.clip)
        self.init = init
        self.context_length = context_length
        width = self.clip.text.d_model
        # A learned offset from the template's word embeddings (or, with init 'random', the context itself).
        self.context = nn.Parameter(torch.zeros(context_length, width) if init == "template"
                                    else torch.randn(context_length, width) * 0.02)

    # --- the frozen backbone ------------------------------------------------------------------
    def train(self, mode: bool = True) -> "PromptLearner":
        super().train(mode)
        self.clip.eval()  # frozen: no dropout, whatever the learner's mode
        return self

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False):
        if state_dict and not any(key.startswith("clip.") for key in state_dict):
            return self.clip.load_state_dict(state_dict, strict=strict, assign=assign)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """f(x): the frozen image tower's unit embedding (no gradient flows into the tower)."""
        with torch.no_grad():
            return self.clip.encode_image(images)

    def encode_texts(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unit embeddings of whole texts (descriptions, captions) through the frozen text tower."""
        with torch.no_grad():
            return self.clip.encode_text(tokens)

    # --- prompts ------------------------------------------------------------------------------
    def base_context(self, template: torch.Tensor) -> torch.Tensor:
        """(context_length, width) context vectors without any image conditioning."""
        if self.init == "random":
            return self.context
        require(template.numel() == self.context_length,
                f"{type(self).__name__}.context_length = {self.context_length} but the task's template has "
                f"{template.numel()} words; with init = 'template' they must match")
        with torch.no_grad():
            words = self.clip.token_embeddings(template.view(1, -1))[0]
        return words + self.context

    def class_embeddings(self, context: torch.Tensor, names: torch.Tensor) -> torch.Tensor:
        """Class unit embeddings from context vectors (..., M, width) shared by all classes.

        Returns (..., classes, embed_dim): one text-tower pass per class and per context row.
        """
        end = self.clip.text.end_positions(names)
        names = names[:, :int(end.max()) + 1]  # drop padding columns shared by every name
        with torch.no_grad():
            name_embeddings = self.clip.token_embeddings(names)  # (C, L, width)
        lead = context.shape[:-2]
        classes, length, width = name_embeddings.shape
        require(self.context_length + length <= self.clip.text.max_len,
                f"a prompt of {self.context_length} context vectors and {length} name tokens exceeds the text "
                f"tower's max_len {self.clip.text.max_len}")
        context = context.unsqueeze(-3).expand(*lead, classes, self.context_length, width)
        name_embeddings = name_embeddings.expand(*lead, classes, length, width)
        prompts = torch.cat([context, name_embeddings], dim=-2).reshape(-1, self.context_length + length, width)
        positions = (end + self.context_length).repeat(prompts.shape[0] // classes)
        return self.clip.encode_text_embeddings(prompts, positions).view(*lead, classes, -1)

    def logits(self, image: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarity of image embeddings (B, E) with class embeddings (C, E) or (B, C, E)."""
        if classes.dim() == 2:
            return self.clip.scale() * image @ classes.t()
        return self.clip.scale() * torch.einsum("be,bce->bc", image, classes)

    def forward(self, images: torch.Tensor, names: torch.Tensor, template: torch.Tensor,
                **training_only: Any) -> dict[str, torch.Tensor]:
        """`training_only` (labels, descriptions) is what AAPE reads while training; others ignore it."""
        image = self.image_features(images)
        return {"logits": self.logits(image, self.class_embeddings(self.base_context(template), names))}


@gin.configurable
class ZeroShotPrompts(PromptLearner):
    """The hand-written template, unchanged: CLIP's zero-shot classifier.

    Its one trainable parameter is a temperature offset, which rescales every logit alike and so
    cannot change a prediction: training fits only the calibration (and gives the engine's
    optimizer something to step), and accuracy stays the zero-shot accuracy.
    """

    def __init__(self, *, clip: Callable[[], CLIP] = CLIP, context_length: int = 4) -> None:
        super().__init__(clip=clip, context_length=context_length, init="template")
        self.context.requires_grad_(False)
        self.log_temperature_offset = nn.Parameter(torch.zeros(1))  # 1-d: FSDP2 cannot shard a scalar

    def forward(self, images, names, template, **training_only):
        logits = super().forward(images, names, template)["logits"]
        return {"logits": logits * self.log_temperature_offset.exp()}


@gin.configurable
class CoOp(PromptLearner):
    """Context Optimization: `context_length` context vectors shared by all classes, learned."""


class ImageConditionedPrompts(PromptLearner):
    """Context vectors shifted per image by a vector computed from the image embedding f(x)."""

    def conditioned_logits(self, image: torch.Tensor, shift: torch.Tensor, names: torch.Tensor,
                           template: torch.Tensor) -> torch.Tensor:
        """Logits with `shift` (batch, width) added to every context vector of each image's prompts."""
        context = self.base_context(template).unsqueeze(0) + shift.unsqueeze(1)  # (B, M, width)
        return self.logits(image, self.class_embeddings(context, names))


@gin.configurable
class CoCoOp(ImageConditionedPrompts):
    """Conditional CoOp: a meta-network maps f(x) to one offset added to every context vector.

    The meta-network's last layer starts at zero, so training starts from the template prompt.
    """

    def __init__(self, *, clip: Callable[[], CLIP] = CLIP, context_length: int = 4, init: str = "template",
                 meta_hidden: int = 16) -> None:
        super().__init__(clip=clip, context_length=context_length, init=init)
        require(meta_hidden >= 1, f"CoCoOp.meta_hidden must be >= 1, got {meta_hidden}")
        self.meta_net = nn.Sequential(nn.Linear(self.clip.embed_dim, meta_hidden), nn.ReLU(),
                                      nn.Linear(meta_hidden, self.clip.text.d_model))
        nn.init.zeros_(self.meta_net[-1].weight)
        nn.init.zeros_(self.meta_net[-1].bias)

    def forward(self, images, names, template, **training_only):
        image = self.image_features(images)
        return {"logits": self.conditioned_logits(image, self.meta_net(image), names, template)}
