"""Every command in the README's ```bash blocks works as written, at a smoke budget.

Each block runs in a scratch folder that holds a link to gin/, so relative paths (`--gin gin/...`,
`runs/...`, `model.safetensors`) mean what they mean in a fresh clone, and one block's commands
run in order (a run, then the export of that run, then a run that reads the export):

- `python launch/run.py ...` runs in this process with the README's own files and bindings plus
  the smoke bindings below (two steps, tiny shapes and data) and the run folder the README's
  command would have used, and must exit 0 having logged its metrics;
- `python launch/export.py ...` must write the safetensors file it names;
- `python launch/reproduce.py NAME ...` and `python launch/bench.py NAME ...` must answer `--help`
  and know every option the README passes (running them is the reproductions' and benchmarks'
  own tests' job, at tiny sizes, in tests/launch/);
- `python launch/sweep.py ...` must plan its grid (`--torchrun 2` prints one command per point
  without training);
- installs, the test suite itself and torchrun jobs are skipped, each with its reason.

A README command this file cannot classify, or a `launch/run.py` command whose gin file has no
smoke bindings here, fails the test: a new command must come with a way to check it.
"""
from __future__ import annotations

import contextlib
import glob
import io
import math
import os
import re
import shlex

import pytest

from tests.helpers import REPO, tiny_config

README = os.path.join(REPO, "README.md")

SHORT = ["train.steps = 2", "train.log_every = 1", "train.eval_every = 2", "train.checkpoint_every = 2",
         "WarmupCosine.warmup_steps = 0"]
UT = ["UniversalTransformerClassifier.d_model = 16", "UniversalTransformerClassifier.num_heads = 2",
      "UniversalTransformerClassifier.max_steps = 3", "UniversalTransformerClassifier.d_ff = 32",
      "CPVR.length = 8", "LENGTH = 8", "CPVR.train_hops = (1, 3)", "CPVR.eval_hops = (1, 4)",
      "CPVR.eval_examples_per_level = 16", "CPVR.curriculum_batches = 0", "train.batch_size = 8"]
HYPER = ["HyperBlock.pool_size = 2", "HyperBlock.d_embed = 4"]
DIGITS_UVIT = ["DigitsClassification.image_size = 8", "train.batch_size = 8", "UniversalViT.image_size = 8",
               "UniversalViT.patch_size = 4", "UniversalViT.d_model = 16", "UniversalViT.num_heads = 2",
               "UniversalViT.max_steps = 3", "UniversalViT.d_ff = 16"]
ROTATED_DIGITS = ["RotatedDigits.pool_size = 40", "RotatedDigits.intermediate_pool_size = 20",
                  "RotatedDigits.intermediate_domains = 2", "RotatedDigits.image_size = 8", "MLP.input_dim = 64",
                  "MLP.hidden = (16, 16)", "SOURCE_STEPS = 2", "ROUND_STEPS = 2", "ALL_ROUNDS_STEPS = 2",
                  "train.batch_size = 16"]
LRA_ENCODER = ["TransformerClassifier.d_model = 16", "TransformerClassifier.num_heads = 2",
               "TransformerClassifier.num_layers = 1", "TransformerClassifier.d_ff = 16",
               "TransformerClassifier.head_hidden = (8,)", "train.batch_size = 4"]
# The mini-CLIP's towers: pre-training and the prompt runs that load its export share them.
CLIP_TOWERS = ["IMAGE_SIZE = 12", "ViT.patch_size = 6", "ViT.d_model = 16", "ViT.num_layers = 1",
               "ViT.num_heads = 2", "TextTransformer.d_model = 16", "TextTransformer.num_layers = 1",
               "TextTransformer.num_heads = 2", "EMBED_DIM = 16", "train.batch_size = 8"]
GAUDI = tiny_config("tiny_gaudi") + ["train.steps = 2", "prior/train.steps = 2", "train.eval_every = 2",
                                     "prior/train.eval_every = 2", "train.checkpoint_every = 2"]

#: The first --gin file of a README run -> bindings that make it take seconds (on top of SHORT).
SMOKE: dict[str, list[str]] = {
    "gin/hyperut_pvr.gin": UT + HYPER,
    "gin/hyperut/transformer_pvr.gin": tiny_config("tiny_pvr"),
    "gin/hyperut/hyperut_vit_digits.gin": DIGITS_UVIT + HYPER,
    "gin/gift/gift.gin": ROTATED_DIGITS + ["gift.rounds = 2"],
    "gin/gift/self_training.gin": ROTATED_DIGITS,
    "gin/kd/kd_mlp_from_cnn.gin": tiny_config("tiny_kd_digits") + ["Distillation.compare_batches = 1"],
    "gin/lra/listops.gin": LRA_ENCODER + [
        "SEQ_LEN = 24", "LRAListOps.min_length = 4", "LRAListOps.max_depth = 3", "LRAListOps.num_train = 32",
        "LRAListOps.num_eval = 8", "LRAListOps.num_test = 8", "PerformerAttention.num_features = 8"],
    "gin/lra/pathfinder_small.gin": LRA_ENCODER + [
        "LRAPathfinder.num_train = 8", "LRAPathfinder.num_eval = 4", "LRAPathfinder.num_test = 4"],
    "gin/saturation/upstream.gin": [
        "IMAGE_SIZE = 8", "ShapesUpstream.num_examples = 64", "ShapesUpstream.eval_examples = 16",
        "ViT.d_model = 16", "ViT.num_layers = 1", "train.batch_size = 8", "FewShotEvaluator.shots = [1]",
        "FewShotEvaluator.seeds = 1", "FewShotEvaluator.sources = [@CoarseShapes()]",
        "CoarseShapes.pool_per_class = 2", "CoarseShapes.test_per_class = 2"],
    "gin/aape/clip_pretrain.gin": CLIP_TOWERS + ["ImageTextPairs.eval_pairs = 8", "ImageTextPairs.eval_per_class = 1"],
    "gin/aape/aape.gin": CLIP_TOWERS + [
        "FewShotBaseToNew.shots = 1", "FewShotBaseToNew.eval_per_class = 1", "FewShotBaseToNew.retrieval_pairs = 8",
        "AAPE.generator_hidden = 8", "AAPE.aggregator_heads = 2"],
    "gin/dpf/dpf_images.gin": [
        "FieldDenoiser.d_model = 16", "FieldDenoiser.d_latent = 16", "FieldDenoiser.num_latents = 4",
        "FieldDenoiser.num_blocks = 1", "FieldDenoiser.num_heads = 2", "FieldDiffusion.context_points = 8",
        "FieldDiffusion.query_points = 8", "FieldDiffusion.eval_samples = 8", "FieldDiffusion.grid_fields = 2",
        "FieldDiffusion.eval_batches = 1", "FieldDiffusion.feature_steps = 2", "DDIMSampler.steps = 2",
        "ShapeFields.train_fields = 16", "ShapeFields.eval_fields = 8", "train.batch_size = 4"],
    "gin/gaudi/gaudi_rooms.gin": GAUDI,
    "gin/gaudi/gaudi_rooms_conditional.gin": GAUDI,
}

#: Commands not run here, and why.
SKIPPED = {
    "pip": "installs packages: the environment running the tests is that installation",
    "pytest": "the test suite itself",
    "torchrun": "a torchrun job: tests/engine/test_strategies.py runs every strategy on 2 CPU ranks",
    "launch/multinode_torchrun.sh": "several nodes: tests/engine/test_strategies.py runs two nodes on loopback",
}


def bash_blocks(path: str = README) -> list[tuple[int, list[list[str]]]]:
    """(line of the opening fence, commands) for each ```bash block: `\\` continuations joined,
    comments dropped, `a && b` split into two commands, each command a list of words."""
    with open(path) as handle:
        text = handle.read()
    blocks = []
    for match in re.finditer(r"^```bash\n(.*?)^```", text, re.S | re.M):
        joined = match.group(1).replace("\\\n", " ")
        commands: list[list[str]] = []
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                commands.append(words[:cut])
                words = words[cut + 1:]
        blocks.append((text[:match.start()].count("\n") + 1, [c for c in commands if c]))
    return blocks


def kind(command: list[str]) -> str:
    """What a command is: a key of SKIPPED, or 'python <script>'."""
    words = [w for w in command if not re.match(r"^[A-Z_]+=", w)]  # environment assignments
    if words[0] == "python" and len(words) > 1:
        return f"python {words[1]}"
    return words[0]


def option(words: list[str], name: str) -> list[str]:
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w == name]


@contextlib.contextmanager
def captured():
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err


def run_training(words: list[str]) -> None:
    from engine import config
    from launch.run import default_workdir, main
    args = words[2:]
    files, bindings = option(args, "--gin"), option(args, "--bind")
    assert files, f"no --gin in {shlex.join(words)}"
    assert files[0] in SMOKE, (f"the README runs {files[0]}, which has no smoke bindings in "
                               f"tests/test_readme_commands.py: add them to SMOKE")
    workdir = (option(args, "--workdir") or [default_workdir(files, bindings)])[0]
    smoke = [a for b in SHORT + SMOKE[files[0]] for a in ("--bind", b)]  # after the README's: they win
    config.reset()
    with captured() as (_, err):
        code = main(args + smoke + ["--workdir", workdir])
    assert code == 0, f"{shlex.join(words)} exited {code}:\n{err.getvalue()[-3000:]}"
    logged = glob.glob(os.path.join(workdir, "**", "metrics.jsonl"), recursive=True)
    assert logged, f"{shlex.join(words)} wrote no metrics.jsonl under {workdir}"


def run_export(words: list[str]) -> None:
    from safetensors.torch import load_file

    from launch.export import main
    out = option(words, "--out")[0]
    with captured() as (_, err):
        code = main(words[2:])
    assert code == 0, f"{shlex.join(words)} exited {code}: {err.getvalue()}"
    assert load_file(out), f"{out} holds no tensors"


def check_help(words: list[str], capsys) -> None:
    """`NAME --help` works and lists every option the README's command passes."""
    from launch import bench, reproduce
    script, name = words[1], words[2]
    entry = {"launch/reproduce.py": reproduce.main, "launch/bench.py": bench.main}[script]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        entry([name, "--help"])
    shown = capsys.readouterr().out
    assert exit_.value.code == 0 and "usage:" in shown, f"python {script} {name} --help failed"
    unknown = [w for w in words[3:] if w.startswith("--") and w.split("=")[0] not in shown]
    assert not unknown, f"python {script} {name} does not know {unknown}"


def plan_sweep(words: list[str]) -> None:
    from launch.sweep import main
    with captured() as (out, err):
        code = main(words[2:] + ["--torchrun", "2"])
    assert code == 0, f"{shlex.join(words)} --torchrun 2 exited {code}: {err.getvalue()}"
    grid = [len(values.split(",")) for values in re.findall(r"=\[([^\]]*)\]", " ".join(option(words, "--grid")))]
    planned = [line for line in out.getvalue().splitlines() if line.startswith("torchrun ")]
    assert len(planned) == math.prod(grid), out.getvalue()


BLOCKS = bash_blocks()
#: Runs that make their block take more than about 5 s on 2 cores (the rest take about 1 s).
SLOW_GIN = {"gin/hyperut_pvr.gin"}


def _marks(commands: list[list[str]]):
    runs = {option(c, "--gin")[0] for c in commands if kind(c) == "python launch/run.py" and option(c, "--gin")}
    return [pytest.mark.slow] if runs & SLOW_GIN else []


@pytest.mark.parametrize("line, commands", [pytest.param(line, commands, id=f"README.md:{line}",
                                                          marks=_marks(commands)) for line, commands in BLOCKS])
def test_readme_block_runs(line, commands, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    os.symlink(os.path.join(REPO, "gin"), tmp_path / "gin")
    monkeypatch.setenv("GINTRAIN_CACHE", str(tmp_path / "cache"))
    skipped = []
    for words in commands:
        what = kind(words)
        if what in SKIPPED:
            skipped.append(f"{shlex.join(words)}: {SKIPPED[what]}")
        elif what == "python launch/run.py":
            run_training(words)
        elif what == "python launch/export.py":
            run_export(words)
        elif what in ("python launch/reproduce.py", "python launch/bench.py"):
            check_help(words, capsys)
        elif what == "python launch/sweep.py":
            plan_sweep(words)
        else:
            pytest.fail(f"README.md:{line}: no check for {shlex.join(words)!r}; teach tests/test_readme_commands.py")
    if skipped and len(skipped) == len(commands):
        pytest.skip("; ".join(skipped))


def test_the_blocks_are_found():
    """The parser sees the README's commands (a changed fence style would silently test nothing)."""
    kinds = {kind(c) for _, commands in BLOCKS for c in commands}
    assert {"python launch/run.py", "python launch/export.py", "python launch/reproduce.py",
            "python launch/bench.py", "python launch/sweep.py", "torchrun"} <= kinds
    assert all(commands for _, commands in BLOCKS)


def test_the_configuration_error_example_prints_what_the_readme_shows(tmp_path, capsys):
    """The README shows a mistyped binding and the first words of its one-line error."""
    from engine import config
    from launch.run import main
    with open(README) as handle:
        text = handle.read()
    example = re.search(r"^\$ (python launch/run\.py .*)\n(.*)$", text, re.M)
    assert example, "the README's `$ python launch/run.py ...` example is gone"
    words, shown = shlex.split(example.group(1)), example.group(2)
    config.reset()
    args = words[2:]
    args[args.index("--gin") + 1] = os.path.join(REPO, args[args.index("--gin") + 1])
    assert main(args + ["--workdir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(shown.split("...")[0].rstrip()), err
    assert "Traceback" not in err and not os.path.exists(tmp_path / "run")
