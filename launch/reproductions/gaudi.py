"""GAUDI at CPU scale: one auto-decoder on procedural box rooms, then latent priors on its frozen
latents (unconditional; conditional on the floor colour with and without guidance), scored on
the frames rendered from sampled latents along their decoded camera paths.

    python launch/reproduce.py gaudi [--steps 1500] [--prior-steps 2000] [--ablation] [--bind B ...]

Every prior shares the one stage-1 run (`gaudi.autodecoder_workdir`), so the prior rows differ
only in the prior. `--ablation` adds a second auto-decoder without latent noise (beta = 0) and
its unconditional prior. Writes results/gaudi/table.md, results.json and PNG strips taken from
the runs' TensorBoard images; finished runs are reused when run again.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import time
from typing import Any

from engine.config import REPO_ROOT
from launch.experiment import markdown_table, run_config

# key: (row label, gin file, auto-decoder key, extra bindings)
PRIORS = {
    "unconditional": ("unconditional", "gin/gaudi/gaudi_rooms.gin", "beta_0.1", []),
    "conditional": ("floor colour, guidance 2", "gin/gaudi/gaudi_rooms_conditional.gin", "beta_0.1", []),
    "conditional_w0": ("floor colour, no guidance", "gin/gaudi/gaudi_rooms_conditional.gin", "beta_0.1",
                       ["LatentPrior.guidance_scale = 0.0"]),
    "beta0": ("unconditional, beta = 0 auto-decoder", "gin/gaudi/gaudi_rooms_beta0.gin", "beta_0", []),
}
STAGE1 = [("psnr", "PSNR (dB)"), ("depth_l1", "depth L1"), ("rotation_error_deg", "rotation error (deg)"),
          ("translation_error", "translation error")]
PRIOR = [("kid", "KID"), ("reference/training_latents/kid", "KID, training latents"),
         ("reference/gaussian/kid", "KID, Gaussian fit"), ("inside_room", "cameras inside"),
         ("step_ratio", "step ratio"), ("turn_ratio", "turn ratio"), ("nn_train_ratio", "NN-train ratio"),
         ("label_accuracy", "floor accuracy")]


def run_prior(key: str, root: str, bindings: list[str]) -> Any:
    _, gin_file, autodecoder, extra = PRIORS[key]
    workdir = os.path.join(root, key)
    os.makedirs(workdir, exist_ok=True)
    shared = f"gaudi.autodecoder_workdir = '{os.path.join(root, 'autodecoder_' + autodecoder)}'"
    with open(os.path.join(workdir, "log.txt"), "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        return run_config([gin_file], [*bindings, *extra, shared], workdir)


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(getattr(v, "value", v)) for k, v in metrics.items() if isinstance(getattr(v, "value", v), (int, float))}


def last_images(workdir: str) -> dict[str, bytes]:
    """The PNG bytes of the last logged step of every TensorBoard image tag in `workdir`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(workdir, "tb"), size_guidance={"images": 0})
    events.Reload()
    return {tag: events.Images(tag)[-1].encoded_image_string for tag in events.Tags()["images"]}


def save_png(data: bytes, path: str, scale: int = 4) -> None:
    """Write an image enlarged `scale` times with nearest-neighbour pixels (the frames are 32 px)."""
    from PIL import Image
    image = Image.open(io.BytesIO(data))
    image.resize((image.width * scale, image.height * scale), Image.NEAREST).save(path)


def write_strips(root: str, keys: list[str], out: str) -> list[str]:
    written = []
    autodecoders = sorted({PRIORS[k][2] for k in keys})
    for name in autodecoders:
        images = last_images(os.path.join(root, f"autodecoder_{name}"))
        if "eval_train/reconstruction" in images:
            written.append(f"reconstruction_{name}.png")
            save_png(images["eval_train/reconstruction"], os.path.join(out, written[-1]))
    for key in keys:
        images = last_images(os.path.join(root, key, "prior"))
        for tag in ("samples", "flythrough_0", "flythrough_1"):
            if f"eval_train/{tag}" in images:
                written.append(f"{tag}_{key}.png")
                save_png(images[f"eval_train/{tag}"], os.path.join(out, written[-1]))
        # The interpolation runs between two training latents: the same strip for every prior of one
        # auto-decoder, so it is written once per auto-decoder.
        interpolation = f"interpolation_{PRIORS[key][2]}.png"
        if "eval_train/interpolation" in images and interpolation not in written:
            written.append(interpolation)
            save_png(images["eval_train/interpolation"], os.path.join(out, interpolation))
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="stage-1 (auto-decoder) steps")
    parser.add_argument("--prior-steps", type=int, default=2000)
    parser.add_argument("--ablation", action="store_true", help="also train a beta = 0 auto-decoder and its prior")
    parser.add_argument("--priors", default="unconditional,conditional,conditional_w0")
    parser.add_argument("--bind", action="append", default=[], help="extra gin bindings for every run")
    parser.add_argument("--root", default=os.path.join(REPO_ROOT, "runs", "gaudi"))
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "results", "gaudi"))
    args = parser.parse_args(argv)
    keys = [k for k in args.priors.split(",") if k] + (["beta0"] if args.ablation else [])
    unknown = [k for k in keys if k not in PRIORS]
    if unknown:
        parser.error(f"unknown priors {unknown}; choose from {sorted(PRIORS)}")
    os.makedirs(args.out, exist_ok=True)
    bindings = [f"train.steps = {args.steps}", f"train.eval_every = {args.steps}",
                f"prior/train.steps = {args.prior_steps}", f"prior/train.eval_every = {args.prior_steps}", *args.bind]
    results: dict[str, dict[str, Any]] = {}
    for key in keys:
        start = time.time()
        result = run_prior(key, args.root, bindings)
        results[key] = {"stage1": scalars(result.autodecoder.metrics["train"]),
                        "prior": scalars(result.prior.metrics["train"]), "seconds": time.time() - start}
        print(f"{key}: {time.time() - start:.0f} s, KID {results[key]['prior']['kid']:.3f}", flush=True)

    stage1_rows, seen = [], set()
    for key in keys:
        if PRIORS[key][2] not in seen:
            seen.add(PRIORS[key][2])
            beta = PRIORS[key][2].split("_", 1)[1]
            stage1_rows.append({"latent noise beta": beta,
                                **{label: results[key]["stage1"].get(name) for name, label in STAGE1}})
    prior_rows = [{"prior": PRIORS[k][0], **{label: results[k]["prior"].get(name) for name, label in PRIOR}}
                  for k in keys]
    strips = write_strips(args.root, keys, args.out)
    command = "python launch/reproduce.py gaudi " + " ".join(argv)
    text = (f"# GAUDI on procedural rooms (CPU scale)\n\n`{command.strip()}`: stage 1 {args.steps} steps, each prior "
            f"{args.prior_steps} steps; {', '.join(args.bind) or 'gin defaults otherwise'}.\n\n"
            "## Stage 1: reconstruction of the training trajectories\n\n"
            + markdown_table(stage1_rows, ["latent noise beta"] + [label for _, label in STAGE1])
            + "\n## Stage 2: scenes generated from sampled latents\n\n"
            + markdown_table(prior_rows, ["prior"] + [label for _, label in PRIOR])
            + "\nStrips: " + ", ".join(strips) + "\n")
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
    print(text)
    return 0
