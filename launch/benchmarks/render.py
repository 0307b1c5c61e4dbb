"""GAUDI rendering cost: rays/s of the tri-plane radiance-field renderer for 16 to 64 samples per
ray (forward only, whole-frame evaluation; forward + backward, training), and stage-1 steps/s.

The field is queried once per sample, so time should grow linearly with the samples per ray: the
printed (time ratio) / (sample ratio) against 16 samples, measured in this process, stays near 1
(below 1 where the fixed per-ray work, tri-plane decoding and ray generation, still counts).

    python launch/bench.py render [--gin gin/gaudi/gaudi_rooms.gin] [--rays 4096] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from engine.config import REPO_ROOT
from launch.benchmarks._record import Record, table
from launch.benchmarks._timing import interleaved, training_seconds


def build(gin_file: str, bindings: list[str]):
    import gin

    from engine import config
    config.import_packages()
    config.reset()
    config.parse([gin_file], bindings)
    return gin.get_configurable("SceneAutoDecoding")(), gin.get_configurable("GAUDI")(), gin.query_parameter("train.batch_size")


def render_seconds(model, samples: int, rays: int, scenes: int, backward: bool) -> float:
    """Seconds to render `rays` random rays through each of `scenes` decoded scenes."""
    generator = torch.Generator().manual_seed(0)
    origins = 0.3 * torch.randn(scenes, rays, 3, generator=generator)
    directions = torch.nn.functional.normalize(torch.randn(scenes, rays, 3, generator=generator), dim=-1)
    model.samples_per_ray = samples
    model.train(backward)  # training mode: stratified samples and one pass; eval: chunked midpoints
    start = time.perf_counter()
    with torch.set_grad_enabled(backward):
        z_scene = model.split(model.latents()[:scenes])[0]
        out = model.render_rays(model.scene_decoder(z_scene), origins, directions)
        if backward:
            (out["rgb"].sum() + out["depth"].sum()).backward()
            model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gin", default=os.path.join(REPO_ROOT, "gin", "gaudi", "gaudi_rooms.gin"))
    parser.add_argument("--bind", action="append", default=[])
    parser.add_argument("--samples", default="16,24,32,48,64", help="samples per ray")
    parser.add_argument("--rays", type=int, default=4096, help="rays per scene per timing")
    parser.add_argument("--scenes", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--warm-steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    record = Record(__name__, parser, argv)
    args = record.args
    task, model, batch_size = build(args.gin, args.bind)
    counts = [int(s) for s in args.samples.split(",")]
    configured = model.samples_per_ray
    print(f"threads: {torch.get_num_threads()}, {os.path.basename(args.gin)}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters, {args.scenes} scenes x {args.rays} rays")
    rows = {n: {"samples": n} for n in counts}
    for backward in (False, True):
        render_seconds(model, counts[0], args.rays, args.scenes, backward)  # warm-up
        timings = interleaved({n: (lambda n=n: render_seconds(model, n, args.rays, args.scenes, backward))
                               for n in counts}, args.repeats)
        print(f"{'forward + backward (training)' if backward else 'forward (evaluation)'}, median of {args.repeats}")
        print(f"{'samples':>8} {'rays/s':>10} {'time ratio':>11} {'sample ratio':>13} {'time/sample ratio':>18}")
        for n in counts:
            rate = args.scenes * args.rays / timings[n]
            time_ratio, sample_ratio = timings[n] / timings[counts[0]], n / counts[0]
            print(f"{n:>8} {rate:>10.0f} {time_ratio:>11.2f} {sample_ratio:>13.2f} {time_ratio / sample_ratio:>18.2f}")
            mode = "train" if backward else "forward"
            rows[n].update({f"{mode}_rays_per_s": rate, f"{mode}_linearity": time_ratio / sample_ratio})
    model.samples_per_ray = configured
    rate = args.train_steps / training_seconds(task, model, batch_size, args.warm_steps, args.train_steps)
    scenes = task.scenes
    rays = batch_size * scenes.frames * task.rays_per_frame
    print(f"stage 1: {rate:.2f} steps/s ({batch_size} trajectories x {scenes.frames} frames x "
          f"{task.rays_per_frame} rays = {rays} rays of {configured} samples per step, {rate * rays:.0f} rays/s)")
    figures = {"parameters": sum(p.numel() for p in model.parameters()), "stage1_steps_per_s": rate,
               "stage1_rays_per_s": rate * rays, "stage1_rays": rays, "stage1_samples": configured,
               "trajectories": batch_size, "frames": scenes.frames, "rays_per_frame": task.rays_per_frame,
               "forward_rays_per_s": " / ".join(f"{rows[n]['forward_rays_per_s']:,.0f}" for n in counts),
               "sample_counts": " / ".join(map(str, counts))}
    ratio = f"time / sample ratio (vs {counts[0]})"
    record.save(figures, {"samples": table(
        [("samples per ray", "{samples}"), ("forward rays/s", "{forward_rays_per_s:.0f}"), (ratio, "{forward_linearity:.2f}"),
         ("forward + backward rays/s", "{train_rays_per_s:.0f}"), (ratio, "{train_linearity:.2f}")], list(rows.values()))},
        summary="Renderer: {forward_rays_per_s} forward rays/s at {sample_counts} samples per ray; stage 1 at "
                "{stage1_steps_per_s:.2f} steps/s ({trajectories} trajectories x {frames} frames x {rays_per_frame} "
                "rays = {stage1_rays:,} rays of {stage1_samples} samples per step, {stage1_rays_per_s:.0f} rays/s).")
    return 0
