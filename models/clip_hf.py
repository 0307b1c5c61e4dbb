"""Read and write CLIP weights in the Hugging Face layout (config.json + model.safetensors), with
safetensors and this repository's towers only: no `transformers` install needed.

A local CLIPModel directory (e.g. a downloaded openai/clip-vit-base-patch32) becomes a `CLIP`
whose ViT has CLIP's pre-LayerNorm, bias-free patch and projection layers and quick-GELU, and
whose text tower is causal and read out at the end-of-text token, so the outputs match
`transformers.CLIPModel.get_image_features / get_text_features`.
"""
from __future__ import annotations

import functools
import json
import os
import pickle
from typing import Any, Iterator

import gin
import torch
from torch import nn

from engine.errors import ConfigError
from engine.file_errors import file_error, reading, require_file
from models.clip import CLIP
from models.layers import ACTIVATIONS as FUNCTIONS
from models.text_transformer import TextTransformer
from models.vit import ViT

# transformers' CLIPTextConfig / CLIPVisionConfig / CLIPConfig defaults, for keys a config omits.
TEXT_DEFAULTS = {"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                 "num_attention_heads": 8, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                 "layer_norm_eps": 1e-5, "eos_token_id": 49407}
VISION_DEFAULTS = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                   "num_channels": 3, "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu",
                   "layer_norm_eps": 1e-5}
CLIP_DEFAULTS = {"projection_dim": 512, "logit_scale_init_value": 2.6592}
ACTIVATIONS = ("quick_gelu", "gelu", "relu", "silu")
LAYER = {"self_attn.q_proj": "attention.query", "self_attn.k_proj": "attention.key",
         "self_attn.v_proj": "attention.value", "self_attn.out_proj": "attention.out", "layer_norm1": "norm1",
         "mlp.fc1": "feedforward.inner", "mlp.fc2": "feedforward.outer", "layer_norm2": "norm2"}


#: config.json keys that must be integers >= 1 (eos_token_id may be 0), per tower.
INTEGER_KEYS = {"text": ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                         "max_position_embeddings"),
                "vision": ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                           "num_channels", "image_size", "patch_size")}


def read_config(path: str) -> dict[str, Any]:
    """config.json with transformers' defaults filled in. A file that is not valid JSON (a
    truncated copy) or a size that is not a positive integer is a ConfigError naming the file
    (and line, for JSON) and the key, before any weights are read."""
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        raise ConfigError(f"{path!r} is not a Hugging Face model directory (no config.json)")
    with reading(config_file), open(config_file, encoding="utf-8") as handle:
        try:
            raw = json.load(handle)
        except json.JSONDecodeError as error:
            raise file_error(config_file, f"is not valid JSON ({error.msg}); truncated?", line=error.lineno) from None
    if not isinstance(raw, dict):
        raise file_error(config_file, "must hold a JSON object")
    if raw.get("model_type", "clip") != "clip":
        raise ConfigError(f"{config_file} describes a {raw.get('model_type')!r} model, not 'clip'")
    config = {**CLIP_DEFAULTS, **{k: v for k, v in raw.items() if k in CLIP_DEFAULTS}}
    for tower in ("text", "vision"):
        given = raw.get(f"{tower}_config") or {}
        if not isinstance(given, dict):
            raise file_error(config_file, f"{tower}_config must be a JSON object")
        config[tower] = {**(TEXT_DEFAULTS if tower == "text" else VISION_DEFAULTS), **given}
    checks = [(f"{tower}_config.{key}", config[tower][key], 1) for tower, keys in INTEGER_KEYS.items() for key in keys]
    checks += [("text_config.eos_token_id", config["text"]["eos_token_id"], 0),
               ("projection_dim", config["projection_dim"], 1)]
    for name, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise file_error(config_file, f"{name} must be an integer >= {low}, got {value!r}")
    for tower in ("text", "vision"):
        if config[tower]["hidden_act"] not in ACTIVATIONS:
            raise ConfigError(f"{config_file}: {tower} hidden_act {config[tower]['hidden_act']!r} is not supported; "
                              f"supported: {ACTIVATIONS}")
    return config


def build(config: dict[str, Any]) -> CLIP:
    """An untrained CLIP with the architecture `config` (from `read_config`) describes."""
    text, vision = config["text"], config["vision"]
    image_tower = functools.partial(
        ViT, image_size=vision["image_size"], patch_size=vision["patch_size"], channels=vision["num_channels"],
        d_model=vision["hidden_size"], num_heads=vision["num_attention_heads"], num_layers=vision["num_hidden_layers"],
        d_ff=vision["intermediate_size"], dropout=0.0, pooling="cls", pre_norm=True, activation_name=vision["hidden_act"])
    text_tower = functools.partial(
        TextTransformer, vocab_size=text["vocab_size"], max_len=text["max_position_embeddings"],
        eos_id=text["eos_token_id"], d_model=text["hidden_size"],
        num_heads=text["num_attention_heads"], num_layers=text["num_hidden_layers"], d_ff=text["intermediate_size"],
        dropout=0.0, activation_name=text["hidden_act"],
        # Configs from before transformers' eos_token_id fix say 2 and read out at the largest id.
        eos_is_max_id=text["eos_token_id"] == 2)
    model = CLIP(image_tower=image_tower, text_tower=text_tower, embed_dim=config["projection_dim"],
                 temperature=0.07, max_logit_scale=100.0)
    # CLIP's patch embedding and image projection have no bias.
    project = model.image.patches.project
    model.image.patches.project = nn.Conv2d(project.in_channels, project.out_channels, project.kernel_size,
                                            project.stride, bias=False)
    model.image.head = nn.Linear(vision["hidden_size"], config["projection_dim"], bias=False)
    for tower, eps in ((model.text, text["layer_norm_eps"]), (model.image, vision["layer_norm_eps"])):
        for module in tower.modules():
            if isinstance(module, nn.LayerNorm):
                module.eps = eps
    return model


def key_map(model: CLIP) -> Iterator[tuple[str, str]]:
    """(Hugging Face key, this repository's key) for every weight of `model`."""
    yield "text_model.embeddings.token_embedding.weight", "text.embed.weight"
    yield "text_model.embeddings.position_embedding.weight", "text.positions.table"
    for hf, ours, blocks in (("text_model.encoder.layers", "text.blocks", model.text.blocks),
                             ("vision_model.encoder.layers", "image.stages", model.image.stages)):
        for i in range(len(blocks)):
            for hf_part, our_part in LAYER.items():
                for leaf in ("weight", "bias"):
                    yield f"{hf}.{i}.{hf_part}.{leaf}", f"{ours}.{i}.{our_part}.{leaf}"
    for leaf in ("weight", "bias"):
        yield f"text_model.final_layer_norm.{leaf}", f"text.norm.{leaf}"
        yield f"vision_model.pre_layrnorm.{leaf}", f"image.pre_norm.{leaf}"
        yield f"vision_model.post_layernorm.{leaf}", f"image.norm.{leaf}"
    yield "vision_model.embeddings.class_embedding", "image.cls"
    yield "vision_model.embeddings.patch_embedding.weight", "image.patches.project.weight"
    yield "vision_model.embeddings.position_embedding.weight", "image.positions"
    yield "visual_projection.weight", "image.head.weight"
    yield "text_projection.weight", "text_projection.weight"
    yield "logit_scale", "logit_scale"


def _load_safetensors(file: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    with reading(file, errors=(SafetensorError,)):
        return load_file(file)


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """The tensors of a Hugging Face directory: model.safetensors, its sharded index, or
    pytorch_model.bin (read with weights_only, so a pickle that would run code is refused). A
    truncated or unreadable file, an index that is not JSON or names a missing shard, is a
    ConfigError naming the file."""
    single, index = os.path.join(path, "model.safetensors"), os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(single):
        return _load_safetensors(single)
    if os.path.isfile(index):
        with reading(index), open(index, encoding="utf-8") as handle:
            try:
                weight_map = json.load(handle).get("weight_map")
            except (json.JSONDecodeError, AttributeError):
                weight_map = None
        if not isinstance(weight_map, dict) or not weight_map:
            raise file_error(index, 'is not a safetensors index (no "weight_map" of tensor names to files)')
        files = sorted(set(weight_map.values()))
        for name in files:
            require_file(os.path.join(path, name), f"a shard listed in {index}")
        return {k: v for name in files for k, v in _load_safetensors(os.path.join(path, name)).items()}
    legacy = os.path.join(path, "pytorch_model.bin")
    if os.path.isfile(legacy):
        with reading(legacy, errors=(RuntimeError, pickle.UnpicklingError)):
            return torch.load(legacy, map_location="cpu", weights_only=True)
    raise ConfigError(f"{path!r} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def load_hf_clip(path: str) -> CLIP:
    """A CLIP with the weights of the Hugging Face CLIPModel directory `path`. A tensor that is
    missing, unexpected, or of another shape than config.json implies is a ConfigError naming
    it and both shapes (a reshape is only allowed to add or drop dimensions of size 1)."""
    model = build(read_config(path))
    weights = {k: v for k, v in read_weights(path).items() if not k.endswith("position_ids")}
    ours = model.state_dict()
    state, used = {}, set()
    for hf_key, our_key in key_map(model):
        if hf_key not in weights:
            raise ConfigError(f"{path!r}: the weights have no {hf_key!r}; is this a CLIPModel checkpoint?")
        given, wanted = weights[hf_key].shape, ours[our_key].shape
        if [n for n in given if n != 1] != [n for n in wanted if n != 1]:
            raise ConfigError(f"{path!r}: {hf_key} has shape {list(given)}, but config.json implies "
                              f"{list(wanted)}; the weights and config.json do not belong together")
        state[our_key] = weights[hf_key].reshape(wanted)
        used.add(hf_key)
    unused = sorted(set(weights) - used)
    if unused:
        raise ConfigError(f"{path!r}: unexpected weights {unused[:5]} (not a plain CLIPModel?)")
    model.load_state_dict(state, strict=True)
    return model


def save_hf_clip(model: CLIP, path: str) -> None:
    """Write `model` as a Hugging Face CLIPModel directory; its towers must have CLIP's layout."""
    from safetensors.torch import save_file
    image, text = model.image, model.text
    problems = []
    if not isinstance(image, ViT) or image.pooling != "cls" or not isinstance(image.pre_norm, nn.LayerNorm):
        problems.append("the image tower must be a ViT with pooling 'cls' and pre_norm")
    elif image.patches.project.bias is not None and image.patches.project.bias.abs().max() > 0:
        problems.append("the patch embedding has a non-zero bias")
    elif image.head.bias is not None and image.head.bias.abs().max() > 0:
        problems.append("the image projection has a non-zero bias")
    if problems:
        raise ConfigError(f"cannot write this CLIP in the Hugging Face layout: {'; '.join(problems)}")
    state = model.state_dict()
    weights = {hf: state[ours].detach().cpu().clone().contiguous() for hf, ours in key_map(model)}
    weights["logit_scale"] = weights["logit_scale"].reshape(())  # a scalar in Hugging Face's layout
    weights["vision_model.embeddings.class_embedding"] = weights["vision_model.embeddings.class_embedding"].reshape(-1)
    weights["vision_model.embeddings.position_embedding.weight"] = \
        weights["vision_model.embeddings.position_embedding.weight"].reshape(-1, image.positions.shape[-1])
    block = image.stages[0]
    text_block = text.blocks[0]
    config = {
        "architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": model.embed_dim,
        "logit_scale_init_value": float(model.logit_scale.detach()),
        "text_config": {"vocab_size": text.embed.num_embeddings, "hidden_size": text.d_model,
                        "intermediate_size": text_block.feedforward.inner.out_features,
                        "num_hidden_layers": len(text.blocks), "num_attention_heads": text_block.attention.num_heads,
                        "max_position_embeddings": text.max_len, "hidden_act": _activation_name(text_block),
                        "layer_norm_eps": text.norm.eps, "eos_token_id": 2 if text.eos_is_max_id else text.eos_id,
                        "projection_dim": model.embed_dim},
        "vision_config": {"hidden_size": image.positions.shape[-1], "intermediate_size": block.feedforward.inner.out_features,
                          "num_hidden_layers": len(image.stages), "num_attention_heads": block.attention.num_heads,
                          "num_channels": image.patches.project.in_channels, "image_size": image.patches.image_size,
                          "patch_size": image.patches.project.kernel_size[0], "hidden_act": _activation_name(block),
                          "layer_norm_eps": image.norm.eps, "projection_dim": model.embed_dim},
    }
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as handle:
        json.dump(config, handle, indent=2)
    save_file(weights, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})


def _activation_name(block: nn.Module) -> str:
    return next(name for name, fn in FUNCTIONS.items() if fn is block.feedforward.act)


@gin.configurable
def hugging_face_clip(*, path: str = gin.REQUIRED) -> CLIP:
    """gin factory: `CoOp.clip = @hugging_face_clip` with `hugging_face_clip.path = '/models/clip'`."""
    return load_hf_clip(path)
