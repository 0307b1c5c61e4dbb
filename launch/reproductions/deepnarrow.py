"""Scale Efficiently (DeepNarrow) at CPU scale: T5 shapes that trade depth against width, each
pre-trained with span corruption and fine-tuned on the latent topic of the corpus;
upstream loss vs downstream accuracy at matched parameters and FLOPs, and the Pareto front.

    python launch/reproduce.py deepnarrow [--steps 300] [--finetune-steps 300]

Writes results/deepnarrow/{table.md, downstream_vs_flops.png, upstream_vs_params.png}. Resumable.
"""
from __future__ import annotations

import argparse
import os
import time

from engine.analysis import pareto_front
from engine.config import REPO_ROOT
from launch.experiment import markdown_table
from launch.reproductions._scaling import fmt, load_note, loglog_plot, training_minutes, write
from launch.sweep import Interrupted, sweep

# name -> (size file, extra bindings): a depth ladder at d_model 48, a width ladder at 2 layers,
# and FF / heads doubled around the d_model 64, 2-layer shape (the "base" of this study).
SHAPES = {
    "NL2-DM48": ("cpu_d48_l2", []), "NL4-DM48": ("cpu_d48_l4", []), "NL6-DM48": ("cpu_d48_l6", []),
    "NL8-DM48": ("cpu_d48_l8", []), "NL2-DM64 (base)": ("cpu_d64_l2", []), "NL2-DM96": ("cpu_d96_l2", []),
    "NL2-DM128": ("cpu_d128_l2", []), "NL2-DM64-FF512": ("cpu_d64_l2", ["T5.d_ff = 512"]),
    "NL2-DM64-NH8": ("cpu_d64_l2", ["T5.num_heads = 8"]),
}
# Only the topic task: at this budget 'reversed' and 'spliced' stay at chance for every shape
# (observed with 100-300 fine-tuning steps), so they would add minutes and no signal.
TASKS = ("topic",)
LENGTH = 32


def bindings(steps: int, finetune_steps: int) -> list[str]:
    return [f"train.steps = {steps}", "train.batch_size = 16", f"train.eval_every = {steps}",
            f"train.checkpoint_every = {steps}", "train.log_every = 50", f"SpanCorruption.length = {LENGTH}",
            f"LatentStructure.length = {LENGTH}", "SpanCorruption.eval_batches = 16",
            "LatentStructure.eval_batches = 16", f"T5.max_input_length = {LENGTH + 1}",
            f"WarmupCosine.warmup_steps = {max(steps // 10, 1)}", f"FINETUNE_STEPS = {finetune_steps}",
            f"finetune.downstream = {list(TASKS)}"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="pre-training steps")
    parser.add_argument("--finetune-steps", type=int, default=300, help="steps per downstream task")
    parser.add_argument("--out", help="sweep folder (default runs/reproductions/deepnarrow/steps<N>)")
    parser.add_argument("--results", default=os.path.join(REPO_ROOT, "results", "deepnarrow"))
    args = parser.parse_args(argv)
    out = args.out or os.path.join(REPO_ROOT, "runs", "reproductions", "deepnarrow",
                                   f"steps{args.steps}-{args.finetune_steps}")
    start, records = time.time(), []
    for name, (size, extra) in SHAPES.items():
        folder = os.path.join(out, name.split(" ")[0])
        try:
            found = sweep(["gin/scaling/t5_finetune.gin"], [("SIZE", [size])],
                          bindings(args.steps, args.finetune_steps) + extra, folder)
        except Interrupted:
            return 1
        records += [dict(r, shape=name) for r in found]
    report(records, args, (time.time() - start) / 60)
    return 0


def report(records: list[dict], args, minutes: float) -> None:
    for r in records:
        r["downstream_mean"] = sum(r["downstream"][t] for t in TASKS) / len(TASKS)
    flops_front = set(pareto_front([(r["train_flops"], r["downstream_mean"]) for r in records],
                                   maximize=[False, True]))
    params_front = set(pareto_front([(r["non_embedding_parameters"], -r["upstream"]["cross_entropy"])
                                     for r in records], maximize=[False, True]))
    rows = []
    for index, r in enumerate(records):
        shape = r["shape"]
        rows.append({"shape": shape, "params (non-emb.)": f"{r['non_embedding_parameters'] / 1e3:.0f}K",
                     "train GFLOPs": f"{r['train_flops'] / 1e9:.2f}", "steps/s": fmt(r["steps_per_s"], ".1f"),
                     "upstream loss": fmt(r["upstream"]["cross_entropy"]),
                     "excess loss": fmt(r["upstream"]["excess_loss"]),
                     **{t: fmt(r["downstream"][t]) for t in TASKS}, "downstream mean": fmt(r["downstream_mean"]),
                     "front (FLOPs, downstream)": "yes" if index in flops_front else "",
                     "front (params, upstream)": "yes" if index in params_front else ""})
    order = sorted(range(len(records)), key=lambda i: records[i]["train_flops"])
    pairs = []
    for deep in (r for r in records if r["shape"].startswith(("NL4", "NL6", "NL8"))):
        for wide in (r for r in records if r["shape"].startswith("NL2") and r["shape"] != "NL2-DM48"):
            ratio = deep["train_flops"] / wide["train_flops"]
            if 0.75 <= ratio <= 1.33:
                pairs.append({"deep-narrow": deep["shape"], "wide (2 layers)": wide["shape"],
                              "FLOPs ratio": f"{ratio:.2f}",
                              "params ratio": f"{deep['non_embedding_parameters'] / wide['non_embedding_parameters']:.2f}",
                              "upstream loss (deep / wide)": f"{deep['upstream']['cross_entropy']:.3f} / "
                                                             f"{wide['upstream']['cross_entropy']:.3f}",
                              "downstream mean (deep / wide)": f"{deep['downstream_mean']:.3f} / "
                                                               f"{wide['downstream_mean']:.3f}"})
    command = "python launch/reproduce.py deepnarrow" + (
        f" --steps {args.steps}" if args.steps != 300 else "") + (
        f" --finetune-steps {args.finetune_steps}" if args.finetune_steps != 300 else "")
    floor = records[0]["upstream"]["bayes_floor"]
    timing = f"{training_minutes(records):.0f} min in training loops" + (
        f", {minutes:.0f} min wall for this command" if minutes >= 1 else "")
    text = (f"# DeepNarrow: depth vs width at CPU scale\n\nCommand: `{command}`  \n"
            f"Budget: {len(records)} shapes; pre-training {args.steps} steps x batch 16 of {LENGTH}-word documents, "
            f"then {args.finetune_steps} fine-tuning steps x batch 16 on each of {', '.join(TASKS)}; "
            f"{timing} (1 thread per run; {load_note()} when the report was written).  \n"
            f"Upstream: eval span-corruption cross-entropy (Bayes floor {floor:.3f}); downstream: eval accuracy "
            "(topic: 8 classes, chance 0.125). Rows in order of training FLOPs.\n\n"
            + markdown_table([rows[i] for i in order], list(rows[0]))
            + "\n## Deep-narrow vs wide at matched FLOPs (within 25%)\n\n"
            + (markdown_table(pairs, list(pairs[0])) if pairs else "No pair within 25% of FLOPs.\n"))
    write(os.path.join(args.results, "table.md"), text)
    front = [(records[i]["train_flops"], records[i]["downstream_mean"]) for i in flops_front]
    family = lambda r: "depth ladder (d_model 48)" if r["shape"].endswith("DM48") and not r["shape"].startswith("NL2") \
        else "2 layers, wider / FF / heads"  # noqa: E731
    series: dict[str, list] = {}
    for r in records:
        series.setdefault(family(r), []).append((r["train_flops"], r["downstream_mean"]))
    loglog_plot(os.path.join(args.results, "downstream_vs_flops.png"), series, None, "training FLOPs (pre-training)",
                "mean downstream accuracy", "Downstream accuracy vs compute", front=front)
    series = {}
    for r in records:
        series.setdefault(family(r), []).append((r["non_embedding_parameters"], r["upstream"]["cross_entropy"]))
    loglog_plot(os.path.join(args.results, "upstream_vs_params.png"), series, None, "non-embedding parameters",
                "upstream eval loss", "Upstream loss vs parameters")
    print(text)
