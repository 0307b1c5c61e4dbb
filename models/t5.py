"""T5-style encoder-decoder (Raffel et al. 2020, v1.0 "bi_v1"): pre-norm RMS-norm blocks,
a relative position bias shared within each stack, tied or untied embeddings, and every shape
axis (encoder and decoder depth, d_model, d_ff, d_kv, heads) a separate parameter.

The ten architectures of "Scaling Laws vs Model Architectures" are options of this one model:
the block and token/channel mixers (models/t5_blocks.py), weight sharing across depth
(Universal Transformer, ALBERT), ALBERT's factorised embedding, Funnel encoder pooling, and
a mixture-of-softmaxes output.
"""
from __future__ import annotations

from typing import Any, Mapping

import gin
import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ConfigError, require, require_int
from models.layers import (DenseAttention, FeedForward, MixtureOfSoftmaxes, MultiHeadAttention, RelativePositionBias,
                           TokenEmbedding, can_cross_attend, causal_bias, cross_attention_error, sinusoid)
from models.t5_blocks import BlockShape, T5Block, make_block, rms_norm

SHARING = ("none", "universal", "albert")
POSITIONS = ("relative", "sinusoidal", "none")
OUTPUTS = ("softmax", "mos")
PAD_ID = 0  # also the decoder's start token, as in T5


def shift_right(targets: torch.Tensor) -> torch.Tensor:
    """Teacher forcing: the decoder reads [start, t_1, ..., t_{n-1}] to predict [t_1, ..., t_n]."""
    return F.pad(targets[:, :-1], (1, 0), value=PAD_ID)


def funnel_pool(x: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor):
    """Halve the sequence: mean of each pair of states (Funnel's stride-2 pooling)."""
    if x.shape[1] % 2:
        x = F.pad(x, (0, 0, 0, 1))
        mask = F.pad(mask if mask is not None else torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)[:, :-1],
                     (0, 1), value=False)
        positions = F.pad(positions, (0, 1), value=int(positions[-1]) + 1)
    if mask is None:
        pooled = x.unflatten(1, (-1, 2)).mean(2)
        return pooled, None, positions[::2]
    weights = mask.to(x.dtype).unflatten(1, (-1, 2))
    pooled = (x.unflatten(1, (-1, 2)) * weights[..., None]).sum(2) / weights.sum(2).clamp_min(1)[..., None]
    return pooled, weights.sum(2) > 0, positions[::2]


def split_depth(layers: int, groups: int) -> list[int]:
    """`layers` spread over `groups` as evenly as possible, earlier groups deeper."""
    base, extra = divmod(layers, groups)
    return [base + (index < extra) for index in range(groups)]


# --- closed forms of T5 v1.0 shapes ---------------------------------------------------------
# T5 v1.0 ("bi_v1"): tied input/output embedding, ReLU FFN, no biases, RMS-norm scales, one
# relative-position table (buckets x heads) per stack. These reproduce the published counts
# (Base 222.9M, XXL 11,307M, ...) to within 0.1%; see tests/models/test_t5.py.

def t5_parameter_count(*, d_model: int, d_ff: int, d_kv: int, num_heads: int, encoder_layers: int,
                       decoder_layers: int, vocab_size: int = 32128, relative_buckets: int = 32) -> int:
    inner = num_heads * d_kv
    encoder = encoder_layers * (4 * d_model * inner + 2 * d_model * d_ff + 2 * d_model) + d_model
    decoder = decoder_layers * (8 * d_model * inner + 2 * d_model * d_ff + 3 * d_model) + d_model
    return vocab_size * d_model + encoder + decoder + 2 * relative_buckets * num_heads


def t5_flops_per_token(*, d_model: int, d_ff: int, d_kv: int, num_heads: int, encoder_layers: int,
                       decoder_layers: int, vocab_size: int = 32128, input_length: int = 512,
                       target_length: int = 114) -> tuple[float, float]:
    """Forward FLOPs (2 per multiply-add) of one encoder token and of one decoder token."""
    inner = num_heads * d_kv
    encoder = encoder_layers * (2 * (4 * d_model * inner + 2 * d_model * d_ff) + 4 * input_length * inner)
    decoder = (decoder_layers * (2 * (8 * d_model * inner + 2 * d_model * d_ff) + 4 * target_length * inner
                                 + 4 * input_length * inner) + 2 * d_model * vocab_size)
    return float(encoder), float(decoder)


def t5_forward_flops(*, input_length: int = 512, target_length: int = 114, **shape: int) -> float:
    """Forward FLOPs of one example: every encoder token plus every decoder token."""
    encoder, decoder = t5_flops_per_token(input_length=input_length, target_length=target_length, **shape)
    return input_length * encoder + target_length * decoder


@gin.configurable
class T5(nn.Module):
    """Encoder-decoder over token ids; forward(inputs, targets) -> {'logits', ['aux_loss']}."""

    def __init__(self, *, vocab_size: int, d_model: int = 512, d_ff: int = 2048, d_kv: int = 64,
                 num_heads: int = 8, encoder_layers: int = 6, decoder_layers: int = 6,
                 tie_embeddings: bool = True, embedding_dim: int | None = None, block: str = "standard",
                 encoder_mixer: str = "attention", decoder_mixer: str = "attention",
                 feedforward: str = "dense", moe_every: int = 2, ffn_activation: str = "relu",
                 ffn_gated: bool = False, share_layers: str = "none", funnel_pools: int = 0,
                 positions: str = "relative", relative_buckets: int = 32, relative_max_distance: int = 128,
                 output: str = "softmax", max_input_length: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("d_ff", d_ff), ("d_kv", d_kv), ("num_heads", num_heads),
                            ("encoder_layers", encoder_layers), ("decoder_layers", decoder_layers),
                            ("moe_every", moe_every), ("max_input_length", max_input_length)):
            require_int(value, f"T5.{name}", low=1)
        for name, value, choices in (("share_layers", share_layers, SHARING), ("positions", positions, POSITIONS),
                                     ("output", output, OUTPUTS)):
            require(value in choices, f"T5.{name} must be one of {choices}, got {value!r}")
        require(0 <= funnel_pools < encoder_layers,
                f"T5.funnel_pools = {funnel_pools} needs 0 <= pools < encoder_layers = {encoder_layers}")
        require(not (funnel_pools and share_layers != "none"), "Funnel pooling cannot be combined with shared layers")
        require(not (funnel_pools and block == "evolved"), "Funnel pooling needs T5.block = 'standard'")
        require(embedding_dim is None or embedding_dim > 0,
                f"T5.embedding_dim must be positive, got {embedding_dim}")
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.share_layers = share_layers
        self.positions = positions
        self.encoder_depth, self.decoder_depth = encoder_layers, decoder_layers
        self.shape_axes = dict(d_model=d_model, d_ff=d_ff, d_kv=d_kv, num_heads=num_heads, vocab_size=vocab_size,
                               encoder_layers=encoder_layers, decoder_layers=decoder_layers)
        self.funnel_groups = split_depth(encoder_layers, funnel_pools + 1)
        shape = BlockShape(d_model=d_model, d_ff=d_ff, d_kv=d_kv, num_heads=num_heads,
                           max_input_length=max_input_length, ffn_activation=ffn_activation, ffn_gated=ffn_gated)

        def layer(index: int, decoder: bool) -> nn.Module:
            # Switch Transformer places an expert layer at every `moe_every`-th block.
            ffn = feedforward if feedforward != "switch" or index % moe_every == moe_every - 1 else "dense"
            return make_block(block, shape, decoder=decoder, mixer=decoder_mixer if decoder else encoder_mixer,
                              feedforward=ffn)

        # Shared stacks hold one layer applied depth times (counted and stored once).
        shared = share_layers != "none"
        self.encoder = nn.ModuleList(layer(i, False) for i in range(1 if shared else encoder_layers))
        self.decoder = nn.ModuleList(layer(i, True) for i in range(1 if shared else decoder_layers))
        self.embedding = TokenEmbedding(vocab_size, d_model, tied=tie_embeddings, factor_dim=embedding_dim)
        # A stack gets a bias table only if something in it attends over its own positions.
        self.encoder_bias = self.decoder_bias = None
        if positions == "relative":
            encoder_attention = list(self._self_attentions(self.encoder))
            for attention in encoder_attention:
                if not attention.takes_position_bias:
                    raise ConfigError(f"the encoder's attention core {type(attention.core).__name__} takes no "
                                      "position bias: bind T5.positions = 'sinusoidal' (or 'none')")
            if encoder_attention:
                self.encoder_bias = RelativePositionBias(num_heads, bidirectional=True, num_buckets=relative_buckets,
                                                         max_distance=relative_max_distance)
            if list(self._self_attentions(self.decoder)):
                self.decoder_bias = RelativePositionBias(num_heads, bidirectional=False,
                                                         num_buckets=relative_buckets,
                                                         max_distance=relative_max_distance)
        if funnel_pools:  # pooled queries attend to the unpooled states: cross-attention
            for attention in self._self_attentions(self.encoder):
                if not can_cross_attend(attention.core):
                    raise ConfigError(f"T5.funnel_pools = {funnel_pools}: {cross_attention_error(attention.core)}")
        self.encoder_norm = rms_norm(d_model)
        self.decoder_norm = rms_norm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.mos = MixtureOfSoftmaxes(d_model) if output == "mos" else None

    @staticmethod
    def _self_attentions(layers: nn.ModuleList):
        for block in layers:
            for name in ("mixer", "attention", "self_attention"):  # standard and Evolved blocks
                if isinstance(getattr(block, name, None), MultiHeadAttention):
                    yield getattr(block, name)

    def _closed_form_applies(self) -> bool:
        """The closed forms count T5 v1.0 only: dense attention and an ungated dense FFN in every
        block, no Funnel pooling, a plain softmax over an unfactorised embedding."""
        return (len(self.funnel_groups) == 1 and self.mos is None and self.embedding.project is None
                and all(isinstance(block, T5Block) and isinstance(block.mixer, MultiHeadAttention)
                        and isinstance(block.mixer.core, DenseAttention)
                        and type(block.feedforward) is FeedForward and not block.feedforward.gated
                        for block in (*self.encoder, *self.decoder)))

    def flops_per_example(self, batch: Mapping[str, Any]) -> float | None:
        """Closed-form forward FLOPs of one example shaped like `batch` (`--print-config` shows it
        beside the measured count); None where the closed form does not describe this model."""
        inputs, targets = batch.get("inputs"), batch.get("targets")
        if not (isinstance(inputs, torch.Tensor) and isinstance(targets, torch.Tensor)
                and self._closed_form_applies()):
            return None
        return t5_forward_flops(input_length=inputs.shape[-1], target_length=targets.shape[-1], **self.shape_axes)

    # --- the two stacks ------------------------------------------------------------------------
    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids)
        if self.positions == "sinusoidal":
            x = x + sinusoid(torch.arange(ids.shape[1], device=ids.device), self.d_model).to(x.dtype)
        return self.dropout(x)

    def _layers(self, stack: nn.ModuleList, depth: int):
        """(step, layer) pairs; a shared stack yields its one layer `depth` times."""
        for step in range(depth):
            yield step, stack[0] if self.share_layers != "none" else stack[step]

    def _step_signal(self, x: torch.Tensor, step: int) -> torch.Tensor:
        """The Universal Transformer tells its shared layer which step it is taking."""
        if self.share_layers != "universal":
            return x
        return x + sinusoid(torch.tensor([step], device=x.device), self.d_model).to(x.dtype)

    def _relative(self, table_name: str, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor | None:
        table = getattr(self, table_name)
        return None if table is None else table(queries, keys)

    def encode(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, list[dict]]:
        mask = inputs != PAD_ID
        mask = None if bool(mask.all()) else mask  # no padding: let attention take its fast path
        x = self._embed(inputs)
        positions = torch.arange(inputs.shape[1], device=inputs.device)
        bias = self._relative("encoder_bias", positions, positions)
        stats, layers = [], self._layers(self.encoder, self.encoder_depth)
        for group, depth in enumerate(self.funnel_groups):
            source = query_bias = None
            if group:  # Funnel: pool, and let the first pooled layer query the unpooled states
                source = (x, mask)
                x, mask, pooled = funnel_pool(x, mask, positions)
                query_bias = self._relative("encoder_bias", pooled, positions)
                positions = pooled
                bias = self._relative("encoder_bias", positions, positions)
            for _ in range(depth):
                step, block = next(layers)
                x, block_stats = block(self._step_signal(x, step), mask, bias if source is None else query_bias,
                                       source=source)
                source = None
                stats.append(block_stats)
        return self.dropout(self.encoder_norm(x)), mask, stats

    def decode(self, decoder_inputs: torch.Tensor, memory: torch.Tensor,
               memory_mask: torch.Tensor | None) -> tuple[torch.Tensor, list[dict]]:
        x = self._embed(decoder_inputs)
        length = decoder_inputs.shape[1]
        bias = causal_bias(length, x.device)
        if self.decoder_bias is not None:
            positions = torch.arange(length, device=x.device)
            bias = bias + self.decoder_bias(positions, positions)
        stats = []
        for step, block in self._layers(self.decoder, self.decoder_depth):
            x, block_stats = block(self._step_signal(x, step), None, bias, memory, memory_mask)
            stats.append(block_stats)
        return self.dropout(self.decoder_norm(x)), stats

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        if self.mos is None:
            return self.embedding.logits(h)
        return self.mos(h, self.embedding.output_matrix())

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        memory, memory_mask, encoder_stats = self.encode(inputs)
        h, decoder_stats = self.decode(shift_right(targets), memory, memory_mask)
        out = {"logits": self.logits(h)}
        stats = [s for s in encoder_stats + decoder_stats if s]
        if stats:
            out["aux_loss"] = sum(s["aux_loss"] for s in stats)
            out["dropped_fraction"] = torch.stack([s["dropped_fraction"] for s in stats]).mean()
        return out
