"""Every class of configuration mistake ends in one clear message and exit code 2."""
from __future__ import annotations

import os

import pytest

from launch.run import main as run_main
from tests.helpers import REPO, TINY_PVR, run_cli

PVR = os.path.join(REPO, "gin", "hyperut", "transformer_pvr.gin")


def cli(capsys, *args: str) -> tuple[int, str]:
    code = run_main(list(args) + ["--print-config"])
    return code, capsys.readouterr().err


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_unknown_configurable_suggests_the_closest_name(tmp_path, capsys):
    code, err = cli(capsys, "--gin", PVR, "--gin", write(tmp_path, "x.gin", "train.task = @CPVRR()\n"))
    assert code == 2
    assert "unknown configurable 'CPVRR'" in err and "'CPVR'" in err and "x.gin, line 1" in err


def test_unknown_parameter_names_the_parameter_and_suggests(tmp_path, capsys):
    code, err = cli(capsys, "--gin", PVR, "--bind", "train.stepz = 10")
    assert code == 2
    assert "'train' has no parameter 'stepz'" in err and "Did you mean 'steps'" in err


def test_missing_gin_file(capsys):
    code, err = cli(capsys, "--gin", "no/such/file.gin")
    assert code == 2 and "gin file not found: 'no/such/file.gin'" in err


def test_missing_include_names_the_including_file(tmp_path, capsys):
    code, err = cli(capsys, "--gin", write(tmp_path, "a.gin", "include 'absent.gin'\n"))
    assert code == 2 and "'absent.gin'" in err and "a.gin" in err


def test_syntax_error_gives_file_and_line(tmp_path, capsys):
    bad = write(tmp_path, "bad.gin", "train.steps = 10\ntrain.seed = = 3\n")
    code, err = cli(capsys, "--gin", PVR, "--gin", bad)
    assert code == 2 and "syntax error" in err and "bad.gin" in err and "line 2" in err


def test_unclosed_bracket_is_a_syntax_error(tmp_path, capsys):
    code, err = cli(capsys, "--gin", PVR, "--gin", write(tmp_path, "b.gin", "train.eval_splits = ['eval'\n"))
    assert code == 2 and "syntax error" in err and "b.gin" in err


def test_missing_required_parameter(capsys):
    code, err = cli(capsys, "--gin", os.path.join(REPO, "gin", "runs", "train.gin"))
    assert code == 2 and "missing required parameter: train." in err


def test_undefined_macro(capsys):
    code, err = cli(capsys, "--gin", PVR, "--bind", "CPVR.length = %LENGHT")
    assert code == 2 and "%LENGHT" in err and "never defined" in err and "LENGTH" in err


@pytest.mark.parametrize("binding, expected", [
    ("train.steps = -5", "train.steps must be an integer >= 1, got -5"),
    ("train.batch_size = 'big'", "train.batch_size must be an integer >= 1, got 'big'"),
    ("train.micro_batch_size = 7", "does not divide the per-rank batch 64"),
    ("train.precision = 'fp8'", "train.precision must be one of"),
    ("train.grad_clip = -1.0", "train.grad_clip must be a number > 0, got -1.0"),
    ("train.nonfinite = 'ignore'", "train.nonfinite must be 'stop' or 'skip'"),
])
def test_wrong_type_or_out_of_range_value(capsys, binding, expected):
    code, err = cli(capsys, "--gin", PVR, "--bind", binding)
    assert code == 2 and expected in err


def test_heads_not_dividing_width(capsys):
    code, err = cli(capsys, "--gin", PVR, "--bind", "TransformerClassifier.num_heads = 3")
    assert code == 2
    assert "num_heads = 3 does not divide d_model = 128" in err and "TransformerClassifier" in err


def test_model_too_short_for_the_task_is_caught_before_training(capsys, tmp_path):
    code = run_main(["--gin", PVR, "--bind", "TransformerClassifier.max_len = 4", "--workdir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "exceeds the model's max_len" in err
    assert not os.path.exists(tmp_path / "metrics.jsonl")  # nothing trained


def test_task_out_of_range_hops(capsys):
    code, err = cli(capsys, "--gin", PVR, "--bind", "CPVR.eval_hops = (1, 40)")
    assert code == 2 and "CPVR.eval_hops" in err


def test_print_config_shows_size_and_flops(capsys):
    code = run_main(["--gin", PVR, "--print-config"])
    out = capsys.readouterr().out
    assert code == 0
    assert "train.steps = 3000" in out and "# parameters: 799,760" in out and "FLOPs per example" in out


def test_list_groups_components_by_package(capsys):
    assert run_main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "engine:" in out and "models:" in out and "tasks:" in out
    assert "CPVR" in out and "TransformerClassifier" in out and "WarmupCosine" in out


def test_config_error_exit_code_from_a_real_process(tmp_path):
    result = run_cli(["--gin", PVR, "--bind", "train.steps = 0", "--workdir", str(tmp_path)])
    assert result.returncode == 2
    assert result.stderr.strip().startswith("config error: train.steps") and "Traceback" not in result.stderr


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "deepspeed_zero2", "fairscale"])
def test_a_distributed_strategy_without_torchrun_names_the_torchrun_command(tmp_path, capsys, monkeypatch,
                                                                            strategy):
    workdir = str(tmp_path / "run")
    args = ["--gin", "gin/hyperut/transformer_pvr.gin", "--gin", f"gin/strategy/{strategy}.gin", "--workdir", workdir]
    args += [arg for b in TINY_PVR for arg in ("--bind", b)]
    monkeypatch.chdir(REPO)
    monkeypatch.setattr("sys.argv", ["launch/run.py", *args])  # as `python launch/run.py ARGS` sees it
    code = run_main(args)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (f"runs one process per rank under torchrun: torchrun --nproc-per-node 2 launch/run.py --gin "
            f"gin/hyperut/transformer_pvr.gin --gin gin/strategy/{strategy}.gin --workdir {workdir}") in err
    assert not os.path.exists(os.path.join(workdir, "checkpoints"))


def test_a_bare_word_value_says_strings_need_quotes(tmp_path, capsys):
    code, err = cli(capsys, "--gin", PVR, "--bind", "train.steps = ten")
    assert code == 2 and "'ten'" in err and "strings need quotes" in err and "a --bind" in err
    assert "ast.Name" not in err
    code, err = cli(capsys, "--gin", PVR, "--gin", write(tmp_path, "bare.gin", "\ntrain.steps = ten\n"))
    assert code == 2 and "strings need quotes" in err and "bare.gin, line 2" in err


def test_a_gin_import_of_a_missing_module_is_one_line(tmp_path, capsys):
    code, err = cli(capsys, "--gin", PVR, "--gin", write(tmp_path, "imp.gin", "import no_such_module_xyz\n"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no_such_module_xyz" in err and "imp.gin, line 1" in err


def test_a_component_built_without_a_required_parameter_names_the_binding(tmp_path, capsys):
    config = "train.model = @MLP()\nMLP.input_dim = 16\n"
    code, err = cli(capsys, "--gin", PVR, "--gin", write(tmp_path, "mlp.gin", config))
    assert code == 2 and "missing required parameter: MLP.num_classes" in err


def test_a_model_whose_forward_does_not_fit_the_task_is_a_config_error(tmp_path, capsys):
    config = "train.model = @MLP()\nMLP.input_dim = 16\nMLP.num_classes = 10\n"
    code, err = cli(capsys, "--gin", PVR, "--gin", write(tmp_path, "mlp.gin", config))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "MLP.forward does not take what CPVR passes it" in err
