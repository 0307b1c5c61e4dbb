"""ListOps: the generator's labels, lengths, splits and tokens, and the released-file loader."""
from __future__ import annotations

import random

import numpy as np
import pytest

from engine.errors import ConfigError
from engine.data import Shard
from tasks.lra.listops import (END, OPERATORS, VOCAB, LRAListOps, encode, generate_examples, generate_tree,
                               tokenize, tree_source, tree_tokens, tree_value, write_tsv)


def evaluate_tokens(tokens: list[str]) -> int:
    """An independent evaluator: a stack machine over the token sequence, with numpy's median
    and sum, the functions LRA's `to_value` calls."""
    stack: list[list] = []
    result = None
    for token in tokens:
        if token in OPERATORS:
            stack.append([token, []])
            continue
        if token == END:
            operator, args = stack.pop()
            value = {"[MIN": min, "[MAX": max, "[MED": lambda a: int(np.median(a)),
                     "[SM": lambda a: int(np.sum(a)) % 10}[operator](args)
        else:
            value = int(token)
        if stack:
            stack[-1][1].append(value)
        else:
            result = value
    assert not stack
    return result


SMALL = dict(min_length=20, max_length=120, max_depth=10, max_args=10)


def test_labels_match_an_independent_evaluator_and_lengths_stay_strictly_inside_the_bounds():
    examples = generate_examples(300, seed=1, **SMALL)
    for tree, label in examples:
        tokens = tree_tokens(tree)
        assert evaluate_tokens(tokens) == label
        assert SMALL["min_length"] < len(tokens) < SMALL["max_length"]
    assert len({tuple(tree_tokens(t)) for t, _ in examples}) == 300  # de-duplicated
    assert len({label for _, label in examples}) == 10


def test_hand_built_trees_truncate_the_median_and_sum_modulo_ten():
    assert tree_value(("[MED", [1, 2])) == 1  # median 1.5 -> 1, as int(np.median)
    assert tree_value(("[MED", [4, 1, 3, 2])) == 2
    assert tree_value(("[SM", [9, 8, 7])) == 4
    assert tree_value(("[MAX", [2, ("[MIN", [7, 3]), 1])) == 3
    assert tree_source(("[MAX", [2, 9])) == "( ( ( [MAX 2 ) 9 ) ] )"  # LRA's to_string layout
    assert tokenize(tree_source(("[MAX", [2, ("[SM", [5, 6])]))) == ["[MAX", "2", "[SM", "5", "6", "]", "]"]


def test_depth_limit_forces_leaves_and_the_generator_is_seeded():
    for _ in range(50):
        tree, length = generate_tree(random.Random(_), max_depth=1, max_args=10)
        assert isinstance(tree, int) and length == 1
    assert generate_examples(20, seed=3, **SMALL) == generate_examples(20, seed=3, **SMALL)
    assert generate_examples(20, seed=3, **SMALL) != generate_examples(20, seed=4, **SMALL)


def test_task_splits_are_disjoint_padded_and_use_the_fifteen_token_types(tmp_path):
    task = LRAListOps(max_length=120, min_length=20, num_train=200, num_eval=50, num_test=50, cache=str(tmp_path))
    assert len(VOCAB) == 16 and task.vocab_size == 16  # 15 token types + padding
    rows = {split: {arr[:n].tobytes() for arr, n in zip(task.splits[split]["tokens"], task.splits[split]["length"])}
            for split in ("train", "eval", "test")}
    assert not rows["train"] & rows["eval"] and not rows["train"] & rows["test"] and not rows["eval"] & rows["test"]
    assert task.splits["train"]["tokens"].shape == (200, 119)  # max_length - 1: [CLS] makes 120
    batch = next(task.batches("train", Shard(batch_size=8)))
    tokens, mask = task.decode(batch)
    assert mask.sum(1).tolist() == batch["length"].tolist()
    assert (tokens[~mask] == 0).all() and (tokens[mask] > 0).all()
    again = LRAListOps(max_length=120, min_length=20, num_train=200, num_eval=50, num_test=50, cache=str(tmp_path))
    assert np.array_equal(again.splits["test"]["tokens"], task.splits["test"]["tokens"])  # read from the cache


def test_released_tsv_files_round_trip(tmp_path):
    examples = generate_examples(30, seed=5, **SMALL)
    for name, part in (("basic_train.tsv", examples[:20]), ("basic_val.tsv", examples[20:25]),
                       ("basic_test.tsv", examples[25:])):
        write_tsv(str(tmp_path / name), [(tree_source(tree), label) for tree, label in part])
    task = LRAListOps(data_dir=str(tmp_path), max_length=120)
    assert "released" in task.source
    tree, label = examples[21]
    row = task.splits["eval"]
    assert row["label"][1] == label
    assert np.array_equal(row["tokens"][1, :row["length"][1]], encode(tree_tokens(tree)))


def test_bad_settings_and_files_raise_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="min_length"):
        LRAListOps(min_length=300, max_length=200, cache=str(tmp_path))
    with pytest.raises(ConfigError, match="does not hold"):
        LRAListOps(data_dir=str(tmp_path / "missing"))
    for name in ("basic_train.tsv", "basic_val.tsv", "basic_test.tsv"):
        (tmp_path / name).write_text("Source\tTarget\n( ( [MAX 2 ) ] )\t2\n( ( [AVG 2 ) ] )\t2\n")
    with pytest.raises(ConfigError, match="unknown token"):
        LRAListOps(data_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="distinct expressions"):
        generate_examples(50, min_length=0, max_length=2, max_depth=10, max_args=10, seed=0)  # only 10 digits fit


def test_a_small_encoder_learns_short_listops_from_the_task_file(tmp_path):
    from tests.helpers import losses, train_in_process

    bindings = ["train.steps = 100", "train.batch_size = 32", "train.eval_every = 100", "train.log_every = 10",
                "train.checkpoint_every = 0", "LRAListOps.max_length = 8", "SEQ_LEN = 8", "LRAListOps.min_length = 0",
                "LRAListOps.num_train = 2000", "LRAListOps.num_eval = 200", "LRAListOps.num_test = 200",
                f"LRAListOps.cache = '{tmp_path / 'cache'}'", "TransformerClassifier.d_model = 32",
                "TransformerClassifier.num_layers = 1", "TransformerClassifier.d_ff = 64",
                "TransformerClassifier.head_hidden = (64,)", "AdamW.lr = 3e-3", "WarmupRsqrt.warmup_steps = 10"]
    result = train_in_process(str(tmp_path / "run"), bindings, files=("gin/lra/listops_small.gin",))
    curve = losses(str(tmp_path / "run"))
    assert curve[100] < 0.85 * curve[10]
    labels = np.bincount(LRAListOps(max_length=8, min_length=0, num_train=2000, num_eval=200, num_test=200,
                                    cache=str(tmp_path / "cache")).splits["test"]["label"], minlength=10)
    assert result.metrics["test"]["accuracy"] > 2 * labels.max() / labels.sum()  # twice the majority class
