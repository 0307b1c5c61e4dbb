"""CLIP dual encoder: the causal text tower's read-out, the soft-prompt path, scaled cosine logits,
and the Hugging Face layout (save, load, and agreement with `transformers` where installed)."""
from __future__ import annotations

import functools
import json
import os

import pytest
import torch

from engine.errors import ConfigError
from models.clip import CLIP, symmetric_contrastive_loss
from models.clip_hf import build, hugging_face_clip, load_hf_clip, read_config, save_hf_clip
from models.text_transformer import TextTransformer
from models.vit import ViT

TINY_HF = {"model_type": "clip", "projection_dim": 8, "logit_scale_init_value": 2.6592,
           "text_config": {"vocab_size": 30, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
                           "num_attention_heads": 2, "max_position_embeddings": 10, "eos_token_id": 29},
           "vision_config": {"hidden_size": 16, "intermediate_size": 20, "num_hidden_layers": 2,
                             "num_attention_heads": 4, "image_size": 8, "patch_size": 4, "num_channels": 3}}


def tiny_clip() -> CLIP:
    torch.manual_seed(0)
    return CLIP(image_tower=functools.partial(ViT, image_size=8, patch_size=4, channels=3, d_model=16, num_heads=2,
                                              num_layers=1),
                text_tower=functools.partial(TextTransformer, vocab_size=20, max_len=8, eos_id=1, d_model=16,
                                             num_heads=2, num_layers=2),
                embed_dim=8).eval()


def test_text_tower_reads_the_end_token_and_ignores_what_follows_it():
    model = tiny_clip()
    tokens = torch.tensor([[5, 6, 1, 0, 0, 0], [5, 6, 1, 9, 9, 9], [5, 7, 1, 0, 0, 0]])
    features = model.encode_text(tokens)
    assert torch.allclose(features[0], features[1], atol=1e-6)  # causal: tokens after <eos> are invisible
    assert not torch.allclose(features[0], features[2], atol=1e-3)  # a word before it matters
    assert torch.allclose(features.norm(dim=-1), torch.ones(3), atol=1e-6)


def test_soft_prompt_path_equals_the_token_path():
    model = tiny_clip()
    tokens = torch.tensor([[3, 4, 5, 1, 0], [7, 1, 0, 0, 0]])
    end = model.text.end_positions(tokens)
    assert end.tolist() == [3, 1]
    assert torch.allclose(model.encode_text_embeddings(model.token_embeddings(tokens), end),
                          model.encode_text(tokens), atol=1e-6)


def test_logits_are_scaled_cosines_and_the_loss_prefers_the_diagonal():
    model = tiny_clip()
    images, tokens = torch.rand(3, 3, 8, 8), torch.tensor([[3, 1], [4, 1], [5, 1]])
    out = model(images, tokens)
    expected = model.scale() * model.encode_image(images) @ model.encode_text(tokens).t()
    assert torch.allclose(out["logits"], expected, atol=1e-5)
    assert float(model.scale().detach()) == pytest.approx(1 / 0.07, rel=1e-5)
    aligned = symmetric_contrastive_loss(torch.eye(3) * 10)
    shuffled = symmetric_contrastive_loss(torch.eye(3).roll(1, dims=1) * 10)
    assert aligned < 0.01 < shuffled


def write_config(path, config) -> str:
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as handle:
        json.dump(config, handle)
    return str(path)


def test_hugging_face_layout_round_trips_a_tiny_clip(tmp_path):
    torch.manual_seed(1)
    model = build(read_config(write_config(tmp_path / "spec", TINY_HF)))
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, 0.2)  # every weight random, layer norms and biases included
    saved = str(tmp_path / "clip")
    save_hf_clip(model, saved)
    from safetensors.torch import load_file
    keys = set(load_file(os.path.join(saved, "model.safetensors")))
    assert {"logit_scale", "text_projection.weight", "visual_projection.weight",
            "text_model.embeddings.token_embedding.weight", "vision_model.embeddings.class_embedding",
            "vision_model.pre_layrnorm.weight", "vision_model.encoder.layers.1.mlp.fc2.bias",
            "text_model.encoder.layers.1.self_attn.out_proj.weight", "text_model.final_layer_norm.bias"} <= keys
    assert len(keys) == sum(1 for _ in model.state_dict())
    loaded = hugging_face_clip(path=saved)  # the gin factory: CoOp.clip = @hugging_face_clip
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    images, tokens = torch.rand(2, 3, 8, 8), torch.tensor([[4, 5, 29, 0], [6, 29, 0, 0]])
    assert torch.equal(loaded(images, tokens)["logits"], model(images, tokens)["logits"])
    assert json.load(open(os.path.join(saved, "config.json")))["text_config"]["eos_token_id"] == 29


def test_legacy_hugging_face_config_reads_out_at_the_largest_id(tmp_path):
    config = json.loads(json.dumps(TINY_HF))
    config["text_config"]["eos_token_id"] = 2
    model = build(read_config(write_config(tmp_path, config)))
    assert model.text.end_positions(torch.tensor([[4, 29, 3, 0]])).tolist() == [1]


def test_hugging_face_loader_rejects_what_it_cannot_read(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        load_hf_clip(str(tmp_path))
    with pytest.raises(ConfigError, match="not 'clip'"):
        read_config(write_config(tmp_path / "bert", {"model_type": "bert"}))
    with pytest.raises(ConfigError, match="no model.safetensors"):
        load_hf_clip(write_config(tmp_path / "empty", TINY_HF))
    with pytest.raises(ConfigError, match="Hugging Face layout"):
        save_hf_clip(tiny_clip(), str(tmp_path / "out"))  # a ViT without CLIP's pre-LayerNorm


def projected(features):
    """transformers 4 returns the projected embeddings; 5 returns an output whose pooler_output holds them."""
    return features if isinstance(features, torch.Tensor) else features.pooler_output


def test_hugging_face_loader_matches_transformers(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed (optional)")
    config = transformers.CLIPConfig(text_config=TINY_HF["text_config"], vision_config=TINY_HF["vision_config"],
                                     projection_dim=8)
    torch.manual_seed(2)
    reference = transformers.CLIPModel(config).eval()
    reference.save_pretrained(str(tmp_path))
    ours = load_hf_clip(str(tmp_path))
    images, tokens = torch.rand(2, 3, 8, 8), torch.tensor([[4, 5, 29, 0], [6, 29, 0, 0]])
    with torch.no_grad():
        expected_image = torch.nn.functional.normalize(
            projected(reference.get_image_features(pixel_values=images)), dim=-1)
        expected_text = torch.nn.functional.normalize(projected(reference.get_text_features(input_ids=tokens)), dim=-1)
        assert torch.allclose(ours.encode_image(images), expected_image, atol=1e-5)
        assert torch.allclose(ours.encode_text(tokens), expected_text, atol=1e-5)


def saved_tiny_hf_clip(path) -> str:
    save_hf_clip(build(read_config(write_config(os.path.join(path, "spec"), TINY_HF))), str(path))
    return str(path)


def test_a_damaged_config_json_names_the_file_line_and_key(tmp_path):
    from tests.helpers import config_error
    folder = saved_tiny_hf_clip(tmp_path / "clip")
    config_file = os.path.join(folder, "config.json")
    cut = open(config_file).read()[:300]  # a copy cut short
    with open(config_file, "w") as handle:
        handle.write(cut)
    with config_error(f"{config_file}, line {cut.count(chr(10)) + 1}: is not valid JSON", "truncated?"):
        load_hf_clip(folder)
    broken = json.loads(json.dumps(TINY_HF))
    broken["vision_config"]["hidden_size"] = "16"
    write_config(folder, broken)
    with config_error(config_file, "vision_config.hidden_size must be an integer >= 1, got '16'"):
        load_hf_clip(folder)


def test_truncated_weights_or_weights_of_another_shape_are_one_clear_error(tmp_path):
    from tests.helpers import config_error
    folder = saved_tiny_hf_clip(tmp_path / "clip")
    weights = os.path.join(folder, "model.safetensors")
    whole = open(weights, "rb").read()
    with open(weights, "wb") as handle:
        handle.write(whole[:len(whole) - 64])
    with config_error(weights, "cannot be read"):
        load_hf_clip(folder)
    with open(weights, "wb") as handle:
        handle.write(whole)
    wider = json.loads(json.dumps(TINY_HF))
    wider["text_config"]["vocab_size"] = 31  # config.json no longer matches the tensors
    write_config(folder, wider)
    with config_error("text_model.embeddings.token_embedding.weight has shape [30, 16]",
                      "config.json implies [31, 16]"):
        load_hf_clip(folder)


def test_sharded_and_legacy_weights_name_the_bad_file(tmp_path):
    from safetensors.torch import load_file
    from tests.helpers import config_error
    folder = saved_tiny_hf_clip(tmp_path / "clip")
    tensors = load_file(os.path.join(folder, "model.safetensors"))
    os.remove(os.path.join(folder, "model.safetensors"))
    index = os.path.join(folder, "model.safetensors.index.json")
    with open(index, "w") as handle:
        json.dump({"weight_map": {name: "model-00001-of-00002.safetensors" for name in tensors}}, handle)
    with config_error(os.path.join(folder, "model-00001-of-00002.safetensors"), "no such file", "a shard listed in"):
        load_hf_clip(folder)
    with open(index, "w") as handle:
        handle.write('{"weight_map": {"logit')
    with config_error(index, 'is not a safetensors index (no "weight_map"'):
        load_hf_clip(folder)
    os.remove(index)
    legacy = os.path.join(folder, "pytorch_model.bin")
    torch.save(tensors, legacy)
    with open(legacy, "r+b") as handle:
        handle.truncate(os.path.getsize(legacy) // 2)
    with config_error(legacy, "cannot be read"):
        load_hf_clip(folder)

    class RunsCode:
        def __reduce__(self):
            return (os.getcwd, ())
    torch.save({"logit_scale": RunsCode()}, legacy)
    with config_error(legacy, "cannot be read", "Weights only load failed"):  # refused, nothing ran
        load_hf_clip(folder)
