"""What the few-shot evaluator costs: its closed-form solves (primal and dual, against scikit-learn's
Ridge on the same whitened data), and one full evaluation of every layer on the five downstream
tasks against the training steps it sits between, all timed in this process.

    python launch/bench.py fewshot [--steps 100] [--repeats 3] [--widths 64,1024]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from launch.benchmarks._record import Record, table
from launch.benchmarks._timing import interleaved

# Probe examples N: 25 shots x 10 classes; feature widths D narrower and wider than N.
PROBE_EXAMPLES = 250


def solve_seconds(solver: str, n: int, d: int, repeats_inside: int = 20) -> float:
    """Seconds per fit of the probe's weights (whitening excluded, as it is the same for all)."""
    from sklearn.linear_model import Ridge
    from tasks.saturation.fewshot import ridge_weights, signed_one_hot, whiten
    rng = np.random.default_rng(0)
    x, _ = whiten(rng.normal(size=(n, d)), rng.normal(size=(1, d)))
    y = signed_one_hot(rng.integers(0, 10, n), 10)
    start = time.perf_counter()
    for _ in range(repeats_inside):
        if solver == "sklearn":
            Ridge(alpha=1.0, fit_intercept=False, solver="cholesky").fit(x, y)
        else:
            ridge_weights(x, y, 1.0, solver)
    return (time.perf_counter() - start) / repeats_inside


def evaluator_and_steps(steps: int, pool_per_class: int, test_per_class: int) -> dict[str, float]:
    """Seconds of one FewShotEvaluator.evaluate on a ViT-tiny (every layer, five tasks, shots
    1/5/10/25, 3 seeds) and of `steps` AdamW steps at batch 64 on 16x16 images."""
    from models.vit import ViT
    from tasks.saturation.fewshot import FewShotEvaluator
    from tasks.saturation.fewshot_sets import CoarseShapes, DigitsFewShot, NoiseLevel, ObjectCount, TextureFrequency
    torch.manual_seed(0)
    model = ViT(image_size=16, patch_size=4, num_classes=384, d_model=32, num_heads=2, num_layers=2)
    sizes = dict(pool_per_class=pool_per_class, test_per_class=test_per_class)
    evaluator = FewShotEvaluator(sources=[CoarseShapes(**sizes), TextureFrequency(**sizes), ObjectCount(**sizes),
                                          NoiseLevel(**sizes), DigitsFewShot(**sizes)],
                                 image_size=16, shots=[k for k in (1, 5, 10, 25) if k <= pool_per_class],
                                 l2_reg=1.0, figure=False)
    evaluator.data()  # the images are generated once per run, not per evaluation

    def evaluate() -> float:
        model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            evaluator.evaluate(model)
        return time.perf_counter() - start

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, labels = torch.rand(64, 3, 16, 16), torch.randint(0, 384, (64,))

    def train() -> float:
        model.train()
        start = time.perf_counter()
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(images)["logits"], labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    train()  # warm-up
    return {"evaluate": evaluate, "train": train}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="training steps timed against one evaluation")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pool-per-class", type=int, default=40, help="as in gin/saturation/upstream.gin")
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--widths", default="64,1024", help="feature widths D of the timed solves")
    record = Record(__name__, parser, argv)
    args = record.args
    torch.set_num_threads(1)
    print(f"threads: {torch.get_num_threads()}, medians of {args.repeats} interleaved repeats\n")
    print("| N x D | primal (ms) | dual (ms) | sklearn Ridge (ms) | primal / sklearn | dual / sklearn |")
    print("|---|---|---|---|---|---|")
    n = PROBE_EXAMPLES
    rows = []
    for d in (int(w) for w in args.widths.split(",")):
        times = interleaved({s: (lambda s=s: solve_seconds(s, n, d)) for s in ("primal", "dual", "sklearn")},
                            args.repeats)
        print(f"| {n} x {d + 1} | {1e3 * times['primal']:.2f} | {1e3 * times['dual']:.2f} | "
              f"{1e3 * times['sklearn']:.2f} | {times['primal'] / times['sklearn']:.2f} | "
              f"{times['dual'] / times['sklearn']:.2f} |")
        rows.append({"n": n, "d": d + 1, **{f"{s}_ms": 1e3 * t for s, t in times.items()},
                     "primal_ratio": times["primal"] / times["sklearn"], "dual_ratio": times["dual"] / times["sklearn"]})
    times = interleaved(evaluator_and_steps(args.steps, args.pool_per_class, args.test_per_class), args.repeats)
    per_step = times["train"] / args.steps
    print(f"\nViT-tiny, 16x16: one few-shot evaluation (5 tasks, every layer) {times['evaluate']:.2f} s; "
          f"{args.steps} training steps {times['train']:.2f} s ({1e3 * per_step:.1f} ms/step)")
    print(f"one evaluation = {times['evaluate'] / per_step:.0f} training steps; evaluating every 1000 steps "
          f"adds {100 * times['evaluate'] / (1000 * per_step):.1f}% to training time")
    record.save({"evaluate_s": times["evaluate"], "train_s": times["train"], "steps": args.steps,
                 "step_ms": 1e3 * per_step, "evaluation_in_steps": times["evaluate"] / per_step,
                 "percent_per_1000_steps": 100 * times["evaluate"] / (1000 * per_step),
                 "pool_per_class": args.pool_per_class, "test_per_class": args.test_per_class},
                {"solvers": table([("N x D (with bias)", "{n} x {d}"), ("primal (ms)", "{primal_ms:.2f}"),
                                   ("dual (ms)", "{dual_ms:.2f}"), ("scikit-learn Ridge (ms)", "{sklearn_ms:.2f}"),
                                   ("primal / sklearn", "{primal_ratio:.2f}"), ("dual / sklearn", "{dual_ratio:.2f}")],
                                  rows)},
                summary="One full few-shot evaluation of a ViT-tiny (five tasks, pools of {pool_per_class} and test "
                        "sets of {test_per_class} per class, every layer) takes {evaluate_s:.2f} s, the time of "
                        "{evaluation_in_steps:.0f} training steps at batch 64 ({step_ms:.1f} ms/step): evaluating "
                        "every 1000 steps adds {percent_per_1000_steps:.1f}% to training time.")
    return 0
