"""The configuration axis of the composition matrix: `--print-config` (launch/run.py's dry run: parse,
build task and model, one batch through the model, the report) for every gin file in the
repository, in this process. A file that runs on its own is checked alone; a file another one
includes is checked through it; a fragment written to be composed (an attention core, a T5 size or
architecture, a saturation model, a GIFT domain) is checked on the base it is written for. Every
paper's runnable file is crossed with each gin/strategy/*.gin. A new gin file joins by itself;
a new kind of fragment needs a line in COMPOSED.

Only data set sizes are shrunk (CI_BINDINGS): building a task then takes milliseconds instead of
minutes, and nothing about the model or the run changes.
"""
from __future__ import annotations

import contextlib
import glob
import io
import os
import re

import gin
import pytest

from engine import config, program
from engine.errors import ConfigError
from tests.helpers import REPO

GIN = os.path.join(REPO, "gin")
CI_BINDINGS = [
    *[f"{task}.{split} = 16" for task in ("LRAListOps", "LRAPathfinder", "LRARetrieval", "LRAText")
      for split in ("num_train", "num_eval", "num_test")],
    "ShapesUpstream.num_examples = 64", "ShapesUpstream.eval_examples = 16",
    "BACKBONE = None",  # the prompt-learning files start from a pre-trained CLIP export CI does not have
]
# Fragments and the files around them: (files before, files after). A file in a folder listed
# here is checked only composed, once per base.
COMPOSED = {
    "lra/attention/": [(("lra/image_small.gin",), ())],
    "scaling/arch/": [(("scaling/t5_span.gin",), ())],
    "scaling/size/": [(("scaling/t5_span.gin",), ())],
    "saturation/model/": [(("saturation/upstream.gin",), ())],
    "saturation/head_wd.gin": [((), ("saturation/model/vit_tiny.gin",))],
    "saturation/image_files.gin": [((), ("saturation/model/resnet_tiny.gin",))],
    "gift/moons.gin": [(("gift/gift.gin",), ())],
    "gift/shapes.gin": [(("gift/gift.gin",), ())],
    "gift/digits_60.gin": [(("gift/gift.gin",), ())],
    "hyperut/textured_shapes.gin": [((f"hyperut/{base}_digits.gin",), ()) for base in ("vit", "uvit", "hyperut_vit")],
    "hyperut/transformer_cpvr.gin": [(("hyperut/transformer_pvr.gin", "hyperut/cpvr_hops.gin"), ())],
    "kd/digits_covered.gin": [((f"kd/kd_{base}.gin",), ()) for base in ("mlp", "mlp_from_cnn")],
    # The DPF study's method rows come first, then the domain and the scoring program (launch/reproductions/dpf.py).
    **{f"dpf/{method}.gin": [((), ("dpf/dpf_sphere.gin", "dpf/scored.gin"))]
       for method in ("dpf_method", "gaussian_fit", "oracle")},
    "dpf/scored.gin": [(("dpf/dpf_method.gin", "dpf/dpf_sphere.gin"), ())],
}
# T5 sizes this machine cannot build (a 3B or 11B model) are checked at parse level here;
# tests/models/test_t5.py counts their parameters on the meta device.
TOO_BIG_TO_BUILD = 400e6


def relative(path: str) -> str:
    return os.path.relpath(path, GIN)


ALL = sorted(relative(p) for p in glob.glob(os.path.join(GIN, "**", "*.gin"), recursive=True))
STRATEGIES = sorted(p for p in ALL if p.startswith("strategy/"))


def includes(name: str) -> set[str]:
    """The files `name`'s `include` lines name (resolved as engine.config resolves them)."""
    found = set()
    with open(os.path.join(GIN, name)) as handle:
        for target in re.findall(r"^include\s+'([^']+)'", handle.read(), flags=re.M):
            beside = os.path.normpath(os.path.join(os.path.dirname(name), target))
            found.add(beside if beside in ALL else os.path.normpath(target))
    return found


def composed_rule(name: str):
    return next((rule for prefix, rule in COMPOSED.items() if name == prefix or
                 (prefix.endswith("/") and name.startswith(prefix))), None)


INCLUDED = {target for name in ALL for target in includes(name)}
STANDALONE = [n for n in ALL if n not in INCLUDED and not n.startswith("strategy/") and composed_rule(n) is None]
COMPOSITIONS = [(*before, name, *after) for name in ALL if composed_rule(name) for before, after in composed_rule(name)]
PAPER_FILES = [n for n in STANDALONE if "/" in n]


def dry_run(files: tuple[str, ...], tmp_path) -> str:
    """What `launch/run.py --gin FILES --print-config` prints, in this process."""
    config.reset()
    config.parse([os.path.join(GIN, f) for f in files], CI_BINDINGS)
    with contextlib.redirect_stdout(io.StringIO()):
        result = program.main(str(tmp_path / "run"), dry_run=True)
    text = program.dry_run_text(result)
    assert "# parameters:" in text and "# strategy:" in text, text[-2000:]
    assert not os.path.exists(tmp_path / "run"), "a dry run wrote into its run directory"
    return text


def test_every_gin_file_is_checked_one_way_or_another():
    """Every file is a strategy, or reached from a checked file (alone or composed) through includes."""
    assert INCLUDED <= set(ALL), sorted(INCLUDED - set(ALL))  # no include names a missing file
    reached, frontier = set(), {f for files in [(n,) for n in STANDALONE] + COMPOSITIONS for f in files}
    while frontier:
        reached |= frontier
        frontier = {t for f in frontier for t in includes(f)} - reached
    assert reached | set(STRATEGIES) == set(ALL), sorted(set(ALL) - reached - set(STRATEGIES))


@pytest.mark.parametrize("name", STANDALONE)
def test_file_prints_its_config(name, tmp_path):
    dry_run((name,), tmp_path)


def t5_parameters() -> float:
    from models.t5 import t5_parameter_count
    axes = ("d_model", "d_ff", "d_kv", "num_heads", "encoder_layers", "decoder_layers")
    return t5_parameter_count(**{a: gin.query_parameter(f"T5.{a}") for a in axes})


@pytest.mark.parametrize("files", COMPOSITIONS, ids=["+".join(c) for c in COMPOSITIONS])
def test_fragment_prints_its_config_on_its_base(files, tmp_path):
    if "saturation/image_files.gin" in files:
        # A template for the user's own image folders: everything composes, and the one thing
        # missing is named.
        with pytest.raises(ConfigError, match="train_path"):
            dry_run(files, tmp_path)
        return
    if any(f.startswith("scaling/size/") for f in files):
        config.reset()
        config.parse([os.path.join(GIN, f) for f in files], CI_BINDINGS)
        if t5_parameters() > TOO_BIG_TO_BUILD:
            return
    dry_run(files, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_papers_file_prints_its_config_under_every_strategy(strategy, tmp_path):
    """At print-config level a strategy composes with every paper's file: nothing in a paper's
    gin fights the strategy's, and the report names it (deepspeed_zero1..3 are all `deepspeed`)."""
    wanted = os.path.basename(strategy)[:-4].split("_zero")[0]
    for index, name in enumerate(PAPER_FILES):
        text = dry_run((name, strategy), tmp_path / str(index))
        assert f"# strategy: {wanted}," in text, (name, text[-500:])
