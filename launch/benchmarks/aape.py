"""Test-time cost of the prompt learners on the mini-CLIP: milliseconds per image to classify among
the 24 new classes, as a ratio to zero-shot CLIP measured in the same process.

    python launch/bench.py aape [--batch 64] [--repeats 5] [--descriptions 11]

Zero-shot and CoOp encode each class prompt once per batch; CoCoOp and AAPE condition the
prompts on each image, so they run the text tower once per (image, class); AAPE with
class-embedding conditioning adds its prompt after the text tower (once per class). "Description
ensemble" is the CuPL-style alternative AAPE replaces: encode all N class descriptions and
average them (here once per batch, as a cache would). AAPE reads no description at test time.
"""
from __future__ import annotations

import argparse
import os

import torch

from engine.config import GIN_DIR
from launch.benchmarks._record import Record, table
from launch.benchmarks._timing import Stopwatch, interleaved

GIN = os.path.join(GIN_DIR, "aape", "clip_towers.gin")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--descriptions", type=int, default=11, help="descriptions per class for the ensemble")
    record = Record(__name__, parser, argv)
    args = record.args
    from engine import config
    config.import_packages()
    config.reset()
    config.parse([GIN], [])
    from models.aape import AAPE
    from models.prompting import CoCoOp, CoOp, ZeroShotPrompts
    from tasks.prompting.prompt_learning import FewShotBaseToNew

    torch.manual_seed(0)
    task = FewShotBaseToNew(shots=1, eval_per_class=1)
    const = task.constants(torch.device("cpu"))
    names, template = const["new"], const["template"]
    images = torch.rand(args.batch, 3, task.image_size, task.image_size)
    learners = {"zero-shot": ZeroShotPrompts(), "CoOp": CoOp(), "CoCoOp": CoCoOp(), "AAPE": AAPE(),
                "AAPE, class-embedding conditioning": AAPE(conditioning="class_embedding")}
    descriptions = const["descriptions"][:len(names), :args.descriptions].reshape(-1, const["descriptions"].shape[-1])

    def timed(fn) -> float:
        with torch.no_grad(), Stopwatch() as watch:
            fn()
        return 1000 * watch.seconds / args.batch

    zero_shot = learners["zero-shot"].eval()

    def ensemble() -> None:  # encode every description of every class, average per class, score
        text = zero_shot.encode_texts(descriptions).view(len(names), -1, zero_shot.clip.embed_dim).mean(1)
        zero_shot.logits(zero_shot.image_features(images), torch.nn.functional.normalize(text, dim=-1))

    runs = {name: (lambda m=model.eval(): timed(lambda: m(images, names, template))) for name, model in learners.items()}
    runs["description ensemble (CuPL-like)"] = lambda: timed(ensemble)
    for run in runs.values():
        run()  # warm-up
    medians = interleaved(runs, args.repeats)
    trainable = {name: sum(p.numel() for p in m.parameters() if p.requires_grad) for name, m in learners.items()}
    print(f"{args.batch} images, {len(names)} classes, {torch.get_num_threads()} thread(s)")
    print("| learner | ms / image | ratio to zero-shot | trainable parameters |")
    print("|---|---|---|---|")
    rows = [{"learner": name, "ms": value, "ratio": value / medians["zero-shot"], "trainable": trainable.get(name, 0)}
            for name, value in medians.items()]
    for row in rows:
        print(f"| {row['learner']} | {row['ms']:.3f} | {row['ratio']:.2f} | {row['trainable']:,} |")
    record.save({"images": args.batch, "classes": len(names)},
                {"learners": table([("learner", "{learner}"), ("ms / image", "{ms:.3f}"),
                                    ("ratio to zero-shot", "{ratio:.2f}"), ("trainable parameters", "{trainable:,}")],
                                   rows)})
    return 0
