"""ListOps as generated for LRA: nested MIN / MAX / MED / SM expressions over digits, ten classes.

The generator follows `lra_benchmarks/data/listops.py`: an operator node with 2..max_args
children w.p. 0.25 (always a digit at max_depth), rejection to min_length < tokens <
max_length, de-duplication so the splits are disjoint. Tokens are the released TSV's source
with its brackets dropped: digits, `[MIN` `[MAX` `[MED` `[SM`, and `]` closing each operator.
"""
from __future__ import annotations

import collections
import csv
import os
import random
from typing import Sequence, Union

import gin
import numpy as np

from engine.errors import ConfigError
from engine.file_errors import file_error, parse_label, reading
from tasks.common.cache import Progress
from tasks.lra.base import SequenceTask, cache_dir, cached_arrays, pad_rows, release_dir, split_by_key

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
VALUE_P = 0.25  # probability of an operator node below max_depth
VOCAB = ("<pad>",) + tuple(str(d) for d in range(10)) + OPERATORS + (END,)
TOKEN_IDS = {token: index for index, token in enumerate(VOCAB)}
RELEASED_FILES = {"train": "basic_train.tsv", "eval": "basic_val.tsv", "test": "basic_test.tsv"}

Tree = Union[int, tuple[str, list]]


class _TooLong(Exception):
    """A tree under construction already has more tokens than allowed."""


def generate_tree(rng: random.Random, max_depth: int, max_args: int, limit: int | None = None) -> tuple[Tree, int]:
    """A random expression and its token count (operator + children + `]`).

    With `limit`, raises _TooLong as soon as the tree has more tokens: a tree that long would
    be rejected anyway, so stopping early leaves the distribution of accepted trees unchanged.
    """
    count = [0]

    def grow(depth: int) -> Tree:
        if (rng.random() if depth < max_depth else 1.0) > VALUE_P:
            count[0] += 1
            value = int(rng.random() * 10)
        else:
            count[0] += 2
            children = [grow(depth + 1) for _ in range(rng.randint(2, max_args))]
            value = (OPERATORS[int(rng.random() * len(OPERATORS))], children)
        if limit is not None and count[0] > limit:
            raise _TooLong
        return value

    tree = grow(1)
    return tree, count[0]


def tree_tokens(tree: Tree) -> list[str]:
    if isinstance(tree, int):
        return [str(tree)]
    operator, children = tree
    return [operator] + [token for child in children for token in tree_tokens(child)] + [END]


def tree_source(tree: Tree) -> str:
    """The released text form, the left-nested pairs of LRA's `to_string`:
    `( ( ( [MAX 2 ) 9 ) ] )` for [MAX 2 9 ]."""
    if isinstance(tree, int):
        return str(tree)
    operator, children = tree
    text = f"( {operator} {tree_source(children[0])} )"
    for child in children[1:]:
        text = f"( {text} {tree_source(child)} )"
    return f"( {text} {END} )"


def apply(operator: str, values: Sequence[int]) -> int:
    if operator == "[MIN":
        return min(values)
    if operator == "[MAX":
        return max(values)
    if operator == "[MED":  # int(np.median): the mean of the middle two, truncated
        ordered = sorted(values)
        middle = len(ordered) // 2
        return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) // 2
    if operator == "[SM":
        return sum(values) % 10
    raise ValueError(f"unknown ListOps operator {operator!r}")


def tree_value(tree: Tree) -> int:
    if isinstance(tree, int):
        return tree
    operator, children = tree
    return apply(operator, [tree_value(child) for child in children])


def generate_examples(count: int, *, min_length: int, max_length: int, max_depth: int, max_args: int,
                      seed: int, progress: Progress | None = None) -> list[tuple[Tree, int]]:
    """`count` distinct (tree, label) pairs with min_length < tokens < max_length, shuffled.

    LRA keeps a Python set and writes it in set order (an unseeded shuffle); here a dict keeps
    generation order and a seeded permutation shuffles, so the data is a function of `seed`.
    `progress` counts the expressions found (LRA's sizes take minutes).
    """
    rng = random.Random(seed)
    found: dict[tuple[str, ...], Tree] = {}
    stale, patience = 0, 200_000  # draws in a row without a new expression before giving up
    while len(found) < count:
        stale += 1
        if stale > patience:
            raise ConfigError(f"ListOps: only {len(found)} distinct expressions with {min_length} < length < "
                              f"{max_length} (max_depth {max_depth}, max_args {max_args}) after {patience:,} "
                              "fruitless draws; widen the bounds or ask for fewer examples")
        try:
            tree, length = generate_tree(rng, max_depth, max_args, limit=max_length - 1)
        except _TooLong:
            continue
        if min_length < length < max_length:
            key = tuple(tree_tokens(tree))
            if key not in found:
                found[key], stale = tree, 0
                if progress is not None:
                    progress.update()
    trees = list(found.values())
    order = np.random.default_rng(seed).permutation(len(trees))
    return [(trees[i], tree_value(trees[i])) for i in order]


def tokenize(source: str) -> list[str]:
    """Released source text -> tokens: drop the brackets, keep `]`."""
    return [token for token in source.split() if token not in ("(", ")")]


def encode(tokens: Sequence[str], where: str = "") -> np.ndarray:
    try:
        return np.array([TOKEN_IDS[token] for token in tokens], dtype=np.uint8)
    except KeyError as error:
        raise ConfigError(f"ListOps: unknown token {error.args[0]!r}{where}") from None


def write_tsv(path: str, rows: Sequence[tuple[str, int]]) -> None:
    """Rows (source, label) in the released layout (header `Source`, `Target`)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["Source", "Target"])
        writer.writerows(rows)


def read_tsv(path: str) -> list[tuple[list[str], int]]:
    """(tokens, label) rows of a released `basic_*.tsv` file: an optional header
    `Source<TAB>Target`, then `source<TAB>label` rows; blank lines are skipped.

    A ConfigError names the file and line of the first row with other than 2 fields, a label
    that is not an integer in 0..9, an empty expression, a token outside the vocabulary, or
    operators and `]` that do not pair up (a row cut short); a file with no rows is refused too.
    """
    rows = []
    with reading(path, errors=(csv.Error,)), open(path, newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        for row in reader:
            line = reader.line_num
            if not row or (line == 1 and row[:2] == ["Source", "Target"]):
                continue
            if len(row) != 2:
                raise file_error(path, f"expected 'source<TAB>label', got {len(row)} field(s)", line=line)
            label = parse_label(row[1], 10, path, line=line)
            tokens = tokenize(row[0])
            counts = collections.Counter(tokens)
            unknown = sorted(set(counts).difference(VOCAB[1:]))  # '<pad>' is no token of a source
            if not tokens or unknown:
                raise file_error(path, f"unknown token(s) {unknown[:3]}" if unknown else "empty expression", line=line)
            if counts[END] != sum(counts[operator] for operator in OPERATORS):
                raise file_error(path, f"{sum(counts[o] for o in OPERATORS)} operator(s) but {counts[END]} "
                                 f"closing {END!r}: a cut-off or malformed expression", line=line)
            rows.append((tokens, label))
    if not rows:
        raise file_error(path, "holds no rows")
    return rows


@gin.configurable
class LRAListOps(SequenceTask):
    """ListOps: 10-way classification of an expression's value.

    Sequences have min_length < tokens < max_length, padded to max_length - 1, so with the
    classifier's [CLS] the encoder sees at most `max_length` positions (bind SEQ_LEN to it).
    Reads `basic_{train,val,test}.tsv` from `data_dir` (or $LRA_DATA/listops-1000) when
    present, else generates with LRA's settings (96,000 / 2,000 / 2,000) and caches the arrays.
    A malformed released file is a ConfigError naming the file and line (`read_tsv`).
    """

    def __init__(self, *, data_dir: str | None = None, max_length: int = 2000, min_length: int = 500,
                 max_depth: int = 10, max_args: int = 10, num_train: int = 96_000, num_eval: int = 2_000,
                 num_test: int = 2_000, data_seed: int = 0, cache: str | None = None) -> None:
        super().__init__()
        if max_length < 2:
            raise ConfigError(f"LRAListOps.max_length must be at least 2, got {max_length}")
        self.max_length = max_length
        self.vocab_size = len(VOCAB)
        self.num_classes = 10
        folder = release_dir(data_dir, "listops-1000",
                             lambda d: all(os.path.isfile(os.path.join(d, f)) for f in RELEASED_FILES.values()),
                             "LRAListOps.data_dir (basic_train.tsv, basic_val.tsv, basic_test.tsv)",
                             expected=tuple(RELEASED_FILES.values()))
        if folder:
            for split, name in RELEASED_FILES.items():
                self.splits[split] = self._arrays(read_tsv(os.path.join(folder, name)), f" in {name}")
            self.describe(f"released ListOps files in {folder}")
            return
        if not 0 <= min_length < max_length - 1:
            raise ConfigError(f"LRAListOps needs 0 <= min_length < max_length - 1, got {min_length}, {max_length}")
        if max_depth < 1 or max_args < 2:
            raise ConfigError(f"LRAListOps needs max_depth >= 1 and max_args >= 2, got {max_depth}, {max_args}")
        if min(num_train, num_eval, num_test) < 1:
            raise ConfigError("LRAListOps: num_train, num_eval and num_test must be positive")
        params = dict(max_length=max_length, min_length=min_length, max_depth=max_depth, max_args=max_args,
                      sizes=(num_train, num_eval, num_test), seed=data_seed, version=1)

        def build() -> dict[str, np.ndarray]:
            total = num_train + num_eval + num_test
            with Progress("ListOps: generating expressions", total, unit="expressions") as progress:
                examples = generate_examples(total, min_length=min_length, max_length=max_length,
                                             max_depth=max_depth, max_args=max_args, seed=data_seed,
                                             progress=progress)
            bounds = {"train": (0, num_train), "eval": (num_train, num_train + num_eval),
                      "test": (num_train + num_eval, len(examples))}
            out = {}
            for split, (lo, hi) in bounds.items():
                rows = [(tree_tokens(tree), label) for tree, label in examples[lo:hi]]
                for field, array in self._arrays(rows).items():
                    out[f"{split}.{field}"] = array
            return out

        folder = cache_dir(cache, "listops", params)
        self.splits = split_by_key(cached_arrays(folder, build, what="ListOps"))
        self.describe(f"generated ListOps ({num_train:,} / {num_eval:,} / {num_test:,} examples, "
                      f"{min_length} < tokens < {max_length}, seed {data_seed}), cached in {folder}")

    def _arrays(self, rows: Sequence[tuple[Sequence[str], int]], where: str = "") -> dict[str, np.ndarray]:
        width = self.max_length - 1
        longest = max(len(tokens) for tokens, _ in rows)
        if longest > width:
            raise ConfigError(f"ListOps: a sequence has {longest} tokens{where}, more than max_length - 1 = "
                              f"{width}; raise LRAListOps.max_length (and SEQ_LEN)")
        tokens, lengths = pad_rows([encode(t, where) for t, _ in rows], width)
        return {"tokens": tokens, "length": lengths, "label": np.array([label for _, label in rows], dtype=np.int64)}
