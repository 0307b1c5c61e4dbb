"""Transferring inductive biases through knowledge distillation (Abnar et al. 2020) at CPU scale.

    python launch/reproduce.py kd                       # 3 seeds, both settings (~14 CPU-minutes)
    python launch/reproduce.py kd --seeds 0 --parts digits --bind 'train.steps = 200'   # a smoke run

Digits on a canvas (MLP alone, MLP <- MLP, MLP <- CNN, CNN alone, CNN <- MLP) and subject-verb
agreement (LSTM alone, Transformer alone, Transformer <- Transformer, Transformer <- LSTM), each
over the seeds. Baselines train first; each student then loads its teacher from a baseline run
(same seed for another family, the next seed for the same family, so a student never starts
at its teacher's initialisation). Writes results/kd/table.md, results.json and PNG plots;
finished runs are cached under results/kd/cache/ and reported again, not retrained (delete
that folder after changing a gin file or a binding).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import gin
import numpy as np
import torch

from engine import config
from engine.config import REPO_ROOT
from engine.data import Shard
from launch.experiment import gin_path, markdown_table, mean_std, run_config
from tasks.images.digits_canvas import DIGIT
from tasks.images.sources.transforms import place_on_canvas
from tasks.common.similarity import compare_models

OUT = os.path.join(REPO_ROOT, "results", "kd")

#: part -> rows: (name, gin file, teacher (family row, seed offset) or None)
SETTINGS: dict[str, list[tuple[str, str, tuple[str, int] | None]]] = {
    "digits": [("MLP", "gin/kd/kd_mlp.gin", None), ("CNN", "gin/kd/kd_cnn.gin", None),
               ("MLP <- MLP", "gin/kd/kd_mlp_from_mlp.gin", ("MLP", 1)),
               ("MLP <- CNN", "gin/kd/kd_mlp_from_cnn.gin", ("CNN", 0)),
               ("CNN <- MLP", "gin/kd/kd_cnn_from_mlp.gin", ("MLP", 0))],
    "agreement": [("LSTM", "gin/kd/kd_lstm.gin", None), ("Transformer", "gin/kd/kd_transformer.gin", None),
                  ("Transformer <- Transformer", "gin/kd/kd_transformer_from_transformer.gin", ("Transformer", 1)),
                  ("Transformer <- LSTM", "gin/kd/kd_transformer_from_lstm.gin", ("LSTM", 0))],
}
#: part -> (the model whose bias is to be transferred, the split where representations are compared)
REFERENCE = {"digits": ("CNN", "translated"), "agreement": ("LSTM", "eval")}
CPU_RECORD = "cpu_seconds.txt"
#: part -> (name, bindings) of an extra evaluation: agreement prefixes no longer than the
#: training ones (no distractors or leading clauses, up to 3 attractors), to tell attractors
#: apart from length
EXTRA_EVALS = {"agreement": ("short", ["SubjectVerbAgreement.eval_attractors = (0, 3)",
                                       "SubjectVerbAgreement.eval_distractors = (0, 0)",
                                       "SubjectVerbAgreement.eval_clauses = (0, 0)"])}
TASKS = {"digits": "DigitsOnCanvas", "agreement": "SubjectVerbAgreement"}


def slug(name: str) -> str:
    return name.lower().replace(" <- ", "_from_").replace(" ", "_")


def build_task(part: str, bindings: list[str]):
    """The setting's task exactly as its runs configure it."""
    config.import_packages()
    config.reset()
    try:
        config.parse([gin_path(SETTINGS[part][0][1])], bindings)
        return gin.get_configurable(TASKS[part])()
    finally:
        config.reset()


def compare_shard(task, split: str) -> tuple[Shard, int]:
    """One pass over a fixed test set, or 4 x 512 generated examples (balanced levels)."""
    arrays = getattr(task, "splits", {}).get(split)
    if arrays is not None:
        return Shard(batch_size=len(arrays["label"])), 1
    return Shard(batch_size=512), 4


def record_cpu_seconds(workdir: str, spent: float) -> float:
    """The CPU seconds a run took to train: measured now if it trained now, else as recorded
    when it did (a cached run only reloads and evaluates)."""
    path = os.path.join(workdir, CPU_RECORD)
    if os.path.isfile(path):
        with open(path) as handle:
            return float(handle.read())
    with open(path, "w") as handle:
        handle.write(f"{spent:.1f}")
    return spent


def run_part(part: str, seeds: list[int], extra: list[str], out: str) -> dict[str, Any]:
    """Train every row for every seed; return per-row, per-seed metrics and layer CKA."""
    rows = SETTINGS[part]
    results: dict[str, dict[int, dict[str, Any]]] = {name: {} for name, _, _ in rows}
    models: dict[tuple[str, int], torch.nn.Module] = {}
    workdirs: dict[tuple[str, int], str] = {}
    order = [r for r in rows if r[2] is None] + [r for r in rows if r[2] is not None]
    for name, gin_file, teacher in order:
        for seed in seeds:
            workdir = os.path.join(out, "cache", part, f"{slug(name)}_seed{seed}")
            bindings = [f"train.seed = {seed}", *extra]
            if teacher is not None:
                family, offset = teacher
                teacher_seed = seeds[(seeds.index(seed) + offset) % len(seeds)]
                bindings.append(f"distill.teacher_weights = '{workdirs[(family, teacher_seed)]}'")
            started = time.process_time()
            result = run_config([gin_file], bindings, workdir)
            spent = record_cpu_seconds(workdir, time.process_time() - started)
            print(f"[kd] {part} {name} seed {seed}: {spent:.0f} CPU-s", flush=True)
            models[(name, seed)] = result.model.eval()
            workdirs[(name, seed)] = result.workdir
            results[name][seed] = {split: {k: v for k, v in m.items() if isinstance(v, (int, float))}
                                   for split, m in result.metrics.items()}
            results[name][seed]["cpu_seconds"] = spent
    reference, split = REFERENCE[part]
    task = build_task(part, extra)
    shard, batches = compare_shard(task, split)
    for name, _, _ in rows:
        if name == reference:
            continue
        # A student of the reference's own family starts from the same initialisation as the
        # reference of its seed; compare it with the next seed's instead.
        offset = 1 if name.startswith(reference) else 0
        for seed in seeds:
            other = seeds[(seeds.index(seed) + offset) % len(seeds)]
            with torch.no_grad():
                similarity = compare_models(models[(name, seed)], models[(reference, other)], task, split, shard, batches)
            results[name][seed]["similarity"] = plain(similarity)
    if part in EXTRA_EVALS:
        split_name, bindings = EXTRA_EVALS[part]
        task = build_task(part, [*extra, *bindings])
        for (name, seed), model in models.items():
            with torch.no_grad():
                results[name][seed][split_name] = plain(task.evaluate(model, "eval", Shard(batch_size=256)))
    return results


def plain(metrics: dict[str, Any]) -> dict[str, float]:
    """Ratios (and other scalars) as floats, for JSON and tables."""
    return {k: float(v.value if hasattr(v, "value") else v) for k, v in metrics.items()}


# --- summaries ----------------------------------------------------------------------------

def values(results: dict, name: str, *path: str) -> list[float]:
    out = []
    for per_seed in results[name].values():
        node = per_seed
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            out.append(float(node))
    return out


def mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def cell(xs: list[float]) -> str:
    return mean_std(xs, empty="-")


def digits_table(results: dict) -> str:
    rows = []
    for name, _, _ in SETTINGS["digits"]:
        row = {"model": name}
        for split in ("eval", "translated", "scaled"):
            row[f"{split} acc"] = cell(values(results, name, split, "accuracy"))
            row[f"{split} ECE"] = cell(values(results, name, split, "ece"))
        row["CKA with CNN"] = cell(values(results, name, "similarity", "cka/pre_logits"))
        row["agreement with CNN"] = cell(values(results, name, "similarity", "teacher_agreement"))
        rows.append(row)
    columns = ["model"] + [f"{s} {m}" for s in ("eval", "translated", "scaled") for m in ("acc", "ECE")] + [
        "CKA with CNN", "agreement with CNN"]
    return markdown_table(rows, columns)


def agreement_table(results: dict, levels: list[int]) -> str:
    rows = []
    for name, _, _ in SETTINGS["agreement"]:
        row = {"model": name, "0-1 attractors (train range)": cell(values(results, name, "eval", "accuracy/in_range")),
               ">= 2 attractors": cell(values(results, name, "eval", "accuracy/out_of_range"))}
        for k in levels:
            row[f"{k}"] = cell(values(results, name, "eval", f"accuracy/attractors_{k}"))
        row["ECE"] = cell(values(results, name, "eval", "ece"))
        row["CKA with LSTM"] = cell(values(results, name, "similarity", "cka/pre_logits"))
        row["agreement with LSTM"] = cell(values(results, name, "similarity", "teacher_agreement"))
        rows.append(row)
    columns = ["model", "0-1 attractors (train range)", ">= 2 attractors", *[str(k) for k in levels], "ECE",
               "CKA with LSTM", "agreement with LSTM"]
    return markdown_table(rows, columns)


def ink_outside_training(bindings: list[str]) -> str:
    """How much of the translated digits' ink falls on canvas pixels that no training image (at
    any allowed jitter) ever inks: an MLP's weights from those pixels never get a gradient."""
    task = build_task("digits", bindings)
    centre, n = (task.canvas - DIGIT) // 2, len(task.train_labels)
    ever = np.zeros((task.canvas, task.canvas), dtype=bool)
    for row in range(-task.train_shift, task.train_shift + 1):
        for col in range(-task.train_shift, task.train_shift + 1):
            placed = place_on_canvas(task.train_digits, task.canvas, np.tile([centre + row, centre + col], (n, 1)))
            ever |= (placed[:, 0] > 0).any(axis=0)
    ink = task.splits["translated"]["image"][:, 0] > 0
    outside = (ink & ~ever).sum(axis=(1, 2)) / ink.sum(axis=(1, 2))
    return (f"Training images (every allowed jitter) ink {int(ever.sum())} of the {ever.size} canvas pixels; "
            f"{(outside > 0).mean():.0%} of the translated test digits put ink outside them "
            f"({outside.mean():.0%} of their ink on average).\n")


def short_table(results: dict) -> str:
    """Accuracy by attractor count on prefixes no longer than the training ones."""
    levels = sorted({int(k.rsplit("_", 1)[1]) for s in results["LSTM"].values()
                     for k in s.get("short", {}) if k.startswith("accuracy/attractors_")})
    rows = [{"model": name, **{str(k): cell(values(results, name, "short", f"accuracy/attractors_{k}")) for k in levels},
             "ECE": cell(values(results, name, "short", "ece"))} for name, _, _ in SETTINGS["agreement"]]
    return markdown_table(rows, ["model", *[str(k) for k in levels], "ECE"])


def cka_layers_table(results: dict, part: str) -> str:
    """Mean CKA of each student layer with each layer of the reference model."""
    reference, split = REFERENCE[part]
    lines = []
    for name, _, _ in SETTINGS[part]:
        if name == reference:
            continue
        keys = sorted({k for s in results[name].values() for k in s.get("similarity", {}) if k.startswith("cka/student_")})
        if not keys:
            continue
        pairs = ", ".join(f"{k[len('cka/student_'):].replace('_teacher_', '->')}: {mean(values(results, name, 'similarity', k)):.2f}"
                          for k in keys)
        lines.append(f"- {name}: {pairs}")
    return (f"Linear CKA on '{split}', layer of the model -> layer of the {reference} (mean over seeds):\n\n"
            + "\n".join(lines) + "\n")


def ordered(results: dict, label: str, path: tuple[str, ...], names: list[str], *, lower: bool = False) -> str:
    """A check line: does names[0] beat every other model on the mean of `path`?
    (`lower`: smaller is better.)"""
    means = [mean(values(results, name, *path)) for name in names]
    sign = -1 if lower else 1
    holds = all(sign * means[0] > sign * other for other in means[1:])
    shown = " vs ".join(f"{name} {value:.3f}" for name, value in zip(names, means))
    return f"- [{'x' if holds else ' '}] {label}: {shown}"


def spread(results: dict, label: str, path: tuple[str, ...], names: list[str], limit: float) -> str:
    """A check line: do the means of `path` over `names` lie within `limit` of each other?"""
    means = [mean(values(results, name, *path)) for name in names]
    holds = max(means) - min(means) <= limit
    return f"- [{'x' if holds else ' '}] {label}: {min(means):.3f} .. {max(means):.3f}"


def digits_checks(results: dict) -> list[str]:
    students = ["MLP <- CNN", "MLP <- MLP", "MLP"]
    return [
        ordered(results, "translated accuracy: MLP <- CNN beats MLP <- MLP and MLP", ("translated", "accuracy"), students),
        ordered(results, "scaled accuracy: MLP <- CNN beats MLP <- MLP and MLP", ("scaled", "accuracy"), students),
        spread(results, "in-distribution accuracy within 1.5 points across all runs", ("eval", "accuracy"),
               [name for name, _, _ in SETTINGS["digits"]], 0.015),
        ordered(results, "translated ECE lower for MLP <- CNN", ("translated", "ece"), ["MLP <- CNN", "MLP"], lower=True),
        ordered(results, "CKA with the CNN on translated digits higher for MLP <- CNN",
                ("similarity", "cka/pre_logits"), ["MLP <- CNN", "MLP"]),
        ordered(results, "agreement with the CNN on translated digits higher for MLP <- CNN",
                ("similarity", "teacher_agreement"), ["MLP <- CNN", "MLP"]),
    ]


def agreement_checks(results: dict) -> list[str]:
    return [
        ordered(results, "precondition: LSTM beats the Transformer at >= 2 attractors",
                ("eval", "accuracy/out_of_range"), ["LSTM", "Transformer"]),
        ordered(results, ">= 2 attractors: Transformer <- LSTM beats both other Transformers",
                ("eval", "accuracy/out_of_range"), ["Transformer <- LSTM", "Transformer", "Transformer <- Transformer"]),
        ordered(results, "ECE lower for Transformer <- LSTM", ("eval", "ece"), ["Transformer <- LSTM", "Transformer"],
                lower=True),
        ordered(results, "CKA with the LSTM higher for Transformer <- LSTM", ("similarity", "cka/pre_logits"),
                ["Transformer <- LSTM", "Transformer"]),
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parts", nargs="+", choices=sorted(SETTINGS), default=sorted(SETTINGS))
    parser.add_argument("--bind", action="append", default=[], help="a gin binding added to every run")
    parser.add_argument("--out", default=OUT, help="where table, plots and the run cache go")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started_cpu, started_wall = time.process_time(), time.time()
    results = {part: run_part(part, args.seeds, args.bind, args.out) for part in args.parts}
    cpu_minutes = (time.process_time() - started_cpu) / 60
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as handle:
        json.dump({"seeds": args.seeds, "bindings": args.bind, "results": results}, handle, indent=1)
    from launch.reproductions._kd_plots import write_plots
    write_plots(results, args.out)
    command = "python launch/reproduce.py kd " + " ".join(
        [f"--seeds {' '.join(map(str, args.seeds))}", f"--parts {' '.join(args.parts)}"]
        + [f"--bind '{b}'" for b in args.bind] + ([f"--out {args.out}"] if args.out != OUT else []))
    runs = [seed_result for part in results.values() for row in part.values() for seed_result in row.values()]
    trained = sum(r["cpu_seconds"] for r in runs) / 60
    lines = ["# Transferring inductive biases by distillation: results", "",
             f"Command: `{command}`  ", f"Seeds: {args.seeds}; mean ± standard deviation over seeds. "
             f"Budget: {trained:.1f} CPU-minutes to train the {len(runs)} runs (one thread each; a distilled run "
             f"includes its teacher's forward passes); this invocation took {cpu_minutes:.1f} CPU-minutes and "
             f"{(time.time() - started_wall) / 60:.1f} minutes wall on a shared 2-core machine. Steps, batch and "
             f"learning rates: the gin files (gin/kd/kd_digits.gin, gin/kd/kd_agreement.gin) unless bound "
             f"above.", ""]
    if "digits" in results:
        lines += ["## Digits on a 16x16 canvas: CNN -> MLP", "",
                  "Accuracy and ECE on in-distribution ('eval'), translated (up to ±4 px) and scaled (1.2-1.4x) "
                  "test digits; CKA (penultimate layer) and prediction agreement with the CNN of the same seed "
                  "on the translated digits (the next seed's CNN for CNN <- MLP, which starts from the same-seed "
                  "CNN's initialisation). A <- B: student A distilled from teacher B (T = 5, alpha = 1).", "",
                  digits_table(results["digits"]), ink_outside_training(args.bind),
                  cka_layers_table(results["digits"], "digits"),
                  "Checks (spec section 5, part 1):", "", *digits_checks(results["digits"]), ""]
    if "agreement" in results:
        levels = sorted({int(k.rsplit("_", 1)[1]) for s in results["agreement"]["LSTM"].values()
                         for k in s.get("eval", {}) if k.startswith("accuracy/attractors_")})
        lines += ["## Subject-verb agreement: LSTM -> Transformer", "",
                  "Accuracy by number of attractors (trained on 0-1 attractors and short prefixes), ECE, and "
                  "CKA / prediction agreement with the LSTM of the same seed on the evaluation prefixes "
                  "(0-4 attractors). T = 1, alpha = 1.", "",
                  agreement_table(results["agreement"], levels),
                  "The same models on prefixes no longer than the training ones (no same-number intervening "
                  "nouns, no leading clauses; at most 3 attractors, 18 tokens), accuracy by attractor count:", "",
                  short_table(results["agreement"]), cka_layers_table(results["agreement"], "agreement"),
                  "Checks (spec section 5, part 2):", "", *agreement_checks(results["agreement"]), ""]
    with open(os.path.join(args.out, "table.md"), "w") as handle:
        handle.write("\n".join(lines))
    print("\n".join(lines))
    return 0
