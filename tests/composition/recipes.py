"""The axes of the composition matrix, read from the gin registry, and one tiny recipe per model.

The registry decides what is crossed: every registered attention core, every registered model
class. A recipe (gin files + bindings that make the model tiny and pair it with a task it fits)
is the one thing a new model must bring; `test_every_registered_model_has_a_recipe` fails until it
does, and from then on the model is crossed with every core and every strategy without more work.
"""
from __future__ import annotations

import dataclasses
import inspect

import gin
import torch

from engine import config
from tests.helpers import tiny_config


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A model trained for 2 steps at tiny width: files then bindings, as `launch/run.py` reads them."""

    files: tuple[str, ...]
    bindings: tuple[str, ...] = ()
    #: The model's self-attention runs over at most this many positions (cores with per-position
    #: tables get it as max_len); None where the model has no gin-selectable attention.
    attends_over: int | None = None
    #: Its gin-selected core also attends from one sequence to another (Perceiver reads, Funnel).
    cross_attends: bool = False
    #: Its gin-selected core is handed an additive position bias (T5's relative positions).
    position_bias: bool = False
    #: It decides per example how many recurrent steps to run (ACT).
    halts: bool = False


STEPS = ["train.steps = 2", "train.log_every = 1", "train.eval_every = 2", "train.checkpoint_every = 0",
         "WarmupCosine.warmup_steps = 0"]
PVR = list(tiny_config("tiny_pvr"))
UT = ["UniversalTransformerClassifier.d_model = 16", "UniversalTransformerClassifier.num_heads = 2",
      "UniversalTransformerClassifier.max_steps = 3", "UniversalTransformerClassifier.d_ff = 32",
      "CPVR.length = 8", "LENGTH = 8", "CPVR.train_hops = (1, 3)", "CPVR.eval_hops = (1, 4)",
      "CPVR.eval_examples_per_level = 16", "train.batch_size = 8"]
HYPER = ["HyperBlock.pool_size = 2", "HyperBlock.d_embed = 4"]
DIGITS = ["DigitsClassification.image_size = 8", "train.batch_size = 8"]
VIT = ["ViT.image_size = 8", "ViT.patch_size = 4", "ViT.d_model = 16", "ViT.num_heads = 2", "ViT.num_layers = 1",
       "ViT.d_ff = 16"]
UVIT = ["UniversalViT.image_size = 8", "UniversalViT.patch_size = 4", "UniversalViT.d_model = 16",
        "UniversalViT.num_heads = 2", "UniversalViT.max_steps = 3", "UniversalViT.d_ff = 16"]
CLIP_TINY = ["IMAGE_SIZE = 12", "ViT.patch_size = 6", "ViT.d_model = 16", "ViT.num_layers = 1", "ViT.num_heads = 2",
             "TextTransformer.d_model = 16", "TextTransformer.num_layers = 1", "TextTransformer.num_heads = 2",
             "EMBED_DIM = 16", "train.batch_size = 8"]
PROMPTS = CLIP_TINY + ["train.init_from = None", "FewShotBaseToNew.shots = 1", "FewShotBaseToNew.eval_per_class = 1",
                       "FewShotBaseToNew.retrieval_pairs = 8", "AAPE.generator_hidden = 8", "AAPE.aggregator_heads = 2",
                       "CoCoOp.meta_hidden = 4"]
SATURATION = ["IMAGE_SIZE = 8", "NUM_CLASSES = 384", "ShapesUpstream.num_examples = 64",
              "ShapesUpstream.eval_examples = 16", "train.callbacks = []", "train.batch_size = 8"]
T5_TINY = list(tiny_config("tiny_t5"))
DPF = ["FieldDenoiser.d_model = 16", "FieldDenoiser.d_latent = 16", "FieldDenoiser.num_latents = 4",
       "FieldDenoiser.num_blocks = 1", "FieldDenoiser.self_attends_per_block = 1", "FieldDenoiser.num_heads = 2",
       "FieldDenoiser.num_frequencies = 2", "DigitFields.size = 8", "FieldDiffusion.context_points = 8",
       "FieldDiffusion.query_points = 8", "FieldDiffusion.eval_samples = 8", "FieldDiffusion.grid_fields = 2",
       "FieldDiffusion.eval_batches = 1", "FieldDiffusion.feature_steps = 2", "DDIMSampler.steps = 2",
       "train.batch_size = 4", "train.callbacks = []"]

RECIPES: dict[str, Recipe] = {
    "TransformerClassifier": Recipe(("gin/hyperut/transformer_pvr.gin",), tuple(PVR), attends_over=9),
    "UniversalTransformerClassifier": Recipe(("gin/hyperut/ut_act_pvr.gin",), tuple(UT), attends_over=9, halts=True),
    "HyperUT": Recipe(("gin/hyperut/hyperut_pvr.gin",), tuple(UT + HYPER), attends_over=9, halts=True),
    "ViT": Recipe(("gin/hyperut/vit_digits.gin",), tuple(DIGITS + VIT), attends_over=5),
    "UniversalViT": Recipe(("gin/hyperut/uvit_digits.gin",), tuple(DIGITS + UVIT), attends_over=5, halts=True),
    "HyperUViT": Recipe(("gin/hyperut/hyperut_vit_digits.gin",), tuple(DIGITS + UVIT + HYPER), attends_over=5,
                        halts=True),
    "TwoTowerClassifier": Recipe(("gin/lra/retrieval_small.gin",), (
        "LRARetrieval.max_length = 96", "SEQ_LEN = 97", "LRARetrieval.num_train = 16", "LRARetrieval.num_eval = 4",
        "LRARetrieval.num_test = 4", "TransformerClassifier.d_model = 16", "TransformerClassifier.num_heads = 2",
        "TransformerClassifier.num_layers = 1", "TransformerClassifier.d_ff = 16",
        "TwoTowerClassifier.head_hidden = (8,)",
        "train.batch_size = 4"), attends_over=97),
    "T5": Recipe(("gin/scaling/t5_span.gin",), tuple(T5_TINY), attends_over=16, position_bias=True),
    "CLIP": Recipe(("gin/aape/clip_pretrain.gin",), tuple(CLIP_TINY + [
        "ImageTextPairs.eval_pairs = 8", "ImageTextPairs.eval_per_class = 1"]), attends_over=5),
    "CoOp": Recipe(("gin/aape/coop.gin",), tuple(PROMPTS), attends_over=5),
    "CoCoOp": Recipe(("gin/aape/cocoop.gin",), tuple(PROMPTS), attends_over=5),
    "AAPE": Recipe(("gin/aape/aape.gin",), tuple(PROMPTS), attends_over=5),
    "LSTMClassifier": Recipe(("gin/kd/kd_lstm.gin",), tuple(tiny_config("tiny_kd_agreement"))),
    "MLP": Recipe(("gin/kd/kd_mlp.gin",), tuple(tiny_config("tiny_kd_digits"))),
    "SmallCNN": Recipe(("gin/kd/kd_cnn.gin",), tuple(tiny_config("tiny_kd_digits"))),
    "MLPMixer": Recipe(("gin/saturation/upstream.gin", "gin/saturation/model/mixer_tiny.gin"), tuple(SATURATION)),
    "ResNetV2": Recipe(("gin/saturation/upstream.gin", "gin/saturation/model/resnet_tiny.gin"), tuple(SATURATION)),
    "FieldDenoiser": Recipe(("gin/dpf/dpf_digits.gin",), tuple(DPF), attends_over=8, cross_attends=True),
    # GAUDI's first stage alone (the two-stage program is in the program matrix).
    "GAUDI": Recipe(("gin/gaudi/gaudi_rooms.gin",), tuple(tiny_config("tiny_gaudi") + [
        "run.program = @train", "train.eval_splits = ['train']"])),
}

#: Registered models that are no model family of their own, and why.
NOT_FAMILIES = {
    "ZeroShotPrompts": "CLIP's hand-written prompts: nothing to train (tested with the prompt-learning tasks)",
    "TextTransformer": "CLIP's text tower; trained inside CLIP",
    "LatentDenoiser": "the denoiser of GAUDI's second stage, trained by the gaudi program",
    "HyperBlock": "the block of HyperUT and HyperUViT",
    "hugging_face_clip": "loads released CLIP weights from disk",
}

# Recipe variants that take another path through a family's code: data-dependent control flow
# (a mixture of experts, ACT halting differently per rank), or a core chosen by the model itself.
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "T5-switch-universal": ("T5", ("T5.feedforward = 'switch'", "T5.moe_every = 1", "T5.share_layers = 'universal'",
                                   "T5.encoder_layers = 2", "SwitchFeedForward.num_experts = 4")),
    "HyperUT-fixed-depth": ("HyperUT", ("HyperUT.act = False",)),  # recipe() clears `halts`
    "FieldDenoiser-EMA": ("FieldDenoiser", ("train.callbacks = [@EMA()]",)),
}


# Variants for the attention axis: the other paths a core can take through these models.
ATTENTION_VARIANTS: dict[str, tuple[str, tuple[str, ...], dict]] = {
    "UniversalTransformerClassifier-fixed-depth": ("UniversalTransformerClassifier",
                                                   ("UniversalTransformerClassifier.act = False",), {"halts": False}),
    "HyperUT-generated-ffn-only": ("HyperUT", ("HyperBlock.generate = ['ffn']",), {}),
    "T5-sinusoidal": ("T5", ("T5.positions = 'sinusoidal'",), {"position_bias": False}),
    "T5-funnel": ("T5", ("T5.positions = 'sinusoidal'", "T5.encoder_layers = 2", "T5.funnel_pools = 1"),
                  {"position_bias": False, "cross_attends": True}),
}


def recipe(name: str) -> Recipe:
    """A family's recipe, or a variant's: its family's recipe plus the variant's bindings."""
    if name in VARIANTS:
        family, extra = VARIANTS[name]
        base = RECIPES[family]
        halts = base.halts and not any(b.endswith(".act = False") for b in extra)
        return dataclasses.replace(base, bindings=base.bindings + extra, halts=halts)
    if name in ATTENTION_VARIANTS:
        family, extra, changes = ATTENTION_VARIANTS[name]
        base = RECIPES[family]
        return dataclasses.replace(base, bindings=base.bindings + extra, **changes)
    return RECIPES[name]


def cells() -> list[str]:
    """Every family, then every variant: the model axis of the strategy matrix."""
    return sorted(RECIPES) + sorted(VARIANTS)


def _registered(module_prefix: str) -> dict[str, type]:
    config.import_packages()
    found = {}
    for _, configurable in gin.config._REGISTRY.items():
        target = configurable.wrapped
        if getattr(target, "__module__", "").startswith(module_prefix):
            found[configurable.name] = target
    return found


def registered_models() -> list[str]:
    """Every configurable registered from `models` outside `models.layers`: the model axis."""
    return sorted(name for name, target in _registered("models.").items()
                  if not target.__module__.startswith("models.layers."))


def attention_cores() -> dict[str, type]:
    """Every registered attention core: the classes of models/layers/attention/ that
    MultiHeadAttention builds as `core(num_heads=..., head_dim=...)`."""
    return {name: target for name, target in _registered("models.layers.attention.").items()
            if inspect.isclass(target) and issubclass(target, torch.nn.Module) and name != "MultiHeadAttention"}


def required_settings(core: type) -> list[str]:
    """What a core needs from gin beyond the shape MultiHeadAttention passes (e.g. max_len)."""
    parameters = inspect.signature(core.__init__).parameters.values()
    return [p.name for p in parameters if p.default is inspect.Parameter.empty
            and p.name not in ("self", "num_heads", "head_dim") and p.kind != p.VAR_KEYWORD]


# --- multi-stage programs -----------------------------------------------------------------------
MOONS = list(tiny_config("tiny_gift_moons")) + ["SOURCE_STEPS = 2", "ROUND_STEPS = 2", "ALL_ROUNDS_STEPS = 2"]
PROGRAMS: dict[str, Recipe] = {
    "finetune": Recipe(("gin/scaling/t5_finetune.gin",), tuple(T5_TINY + [
        "FINETUNE_STEPS = 2", "finetune.downstream = ['topic']"])),
    "distill": Recipe(("gin/kd/kd_mlp_from_cnn.gin",), tuple(tiny_config("tiny_kd_digits"))),
    "gift": Recipe(("gin/gift/gift.gin", "gin/gift/moons.gin"), tuple(MOONS + ["gift.rounds = 2"])),
    "self_training": Recipe(("gin/gift/self_training.gin", "gin/gift/moons.gin"), tuple(MOONS)),
    "gradual_self_training": Recipe(("gin/gift/gradual_self_training.gin", "gin/gift/moons.gin"), tuple(MOONS)),
    "gaudi": Recipe(("gin/gaudi/gaudi_rooms.gin",), tuple(tiny_config("tiny_gaudi") + [
        "train.steps = 2", "prior/train.steps = 2", "train.eval_every = 2", "prior/train.eval_every = 2"])),
}


def configuration(cell: str, strategy: str) -> tuple[list[str], list[str]]:
    """Files and bindings of one cell of a torchrun job: `MODEL:PRECISION` (a recipe trained for
    two steps) or `program/NAME` (a multi-stage program, every stage two steps), under `strategy`."""
    strategy_file = f"gin/strategy/{strategy}.gin"
    if cell.startswith("program/"):
        r = PROGRAMS[cell.split("/", 1)[1]]
        steps = ["train.steps = 2", "train.log_every = 1", "train.checkpoint_every = 0"]
        return [*r.files, strategy_file], [*r.bindings, *steps]
    name, precision = cell.split(":")[:2]
    r = recipe(name)
    return [*r.files, strategy_file], [*r.bindings, *STEPS, f"train.precision = '{precision}'"]


# --- the torchrun jobs ----------------------------------------------------------------------------
STRATEGIES = ("ddp", "fsdp", "deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero3", "fairscale")
SHARDS_PARAMETERS = ("fsdp", "deepspeed_zero3")  # no rank holds whole weights outside forward


def job_cells(strategy: str) -> list[str]:
    """One torchrun job's cells: every family and variant in fp32, every family in bf16, every
    halting model with ranks that halt differently, and the multi-stage programs (all under ddp;
    GIFT also under fsdp)."""
    names = cells()
    out = [f"{n}:fp32" for n in names] + [f"{n}:bf16" for n in sorted(RECIPES)]
    out += [f"{n}:fp32:uneven" for n in names if recipe(n).halts]
    if strategy == "ddp":
        out += [f"program/{p}" for p in sorted(PROGRAMS)]
    if strategy == "fsdp":
        out += ["program/gift"]
    return out


def expected_error(cell: str, strategy: str) -> tuple[str, ...] | None:
    """Words the one-line ConfigError must hold where a cell cannot work by construction."""
    if cell.startswith("FieldDenoiser-EMA:") and strategy in SHARDS_PARAMETERS:
        return ("EMA", strategy.split("_")[0])
    return None
