"""GAUDI (Bautista et al. 2022) under the study protocol (docs/studies.md): a latent diffusion prior
over an auto-decoder's scene latents, on procedural box rooms, scored on the frames rendered
along the camera paths of sampled latents.

    python launch/reproduce.py gaudi --budget cpu --jobs 1 --threads 1   # results/gaudi/rooms/cpu.json
    python launch/reproduce.py gaudi --budget smoke --threads 1          # seconds: the whole pipeline
    python launch/reproduce.py gaudi --budget gpu --print-plan           # the gpu budget's runs, nothing trains

Arms are priors (and two references) on one stage-1 auto-decoder per training seed: every arm of
seed s binds `gaudi.autodecoder_workdir` to the same folder, so the first arm trains it and the
others reuse it (the program's own sharing; the engine is deterministic, so this equals training
it per arm). Every row is scored by the same code (`LatentPrior.score`) over 6 sample draws: draw 0
is the validation draw (it would choose; nothing is tuned here), draws 1-5 are the test draws read
once for the table. The references, training latents and a Gaussian fitted to them, are arms
whose prior trains but is not sampled (`LatentPrior.draw_from`). Writes the reconstruction table
of stage 1 into the results' analysis, and PNG strips of the seed-0 runs beside the results.
"""
from __future__ import annotations

import argparse
import io
import os
import shlex
from typing import Any

from launch import study as protocol
from launch.benchmarks._record import load_average
from launch.study import Arm, Budget, Claim, Study

NAME = "gaudi/rooms"
TEST_DRAWS = 5  # plus draw 0, the validation draw
ARMS = (
    Arm("unconditional", "unconditional prior", ("gin/gaudi/gaudi_rooms.gin",)),
    Arm("conditional", "floor colour, guidance 2", ("gin/gaudi/gaudi_rooms_conditional.gin",)),
    Arm("conditional_w0", "floor colour, no guidance", ("gin/gaudi/gaudi_rooms_conditional_w0.gin",)),
    Arm("training_latents", "reference: training latents", ("gin/gaudi/reference_training_latents.gin",)),
    Arm("gaussian", "reference: Gaussian fit to the latents", ("gin/gaudi/reference_gaussian.gin",)),
)
CLAIMS = (
    Claim("guidance_floor_accuracy", "guidance 2 beats no guidance on floor accuracy", "conditional",
          "conditional_w0", metric="label_accuracy", direction="higher", scale=1.0),
    Claim("guidance_kid", "guidance 2 beats no guidance on KID", "conditional", "conditional_w0"),
    Claim("prior_beats_gaussian_kid", "the unconditional prior beats the Gaussian fit on KID", "unconditional",
          "gaussian"),
    Claim("prior_beats_gaussian_inside", "the unconditional prior beats the Gaussian fit on cameras inside",
          "unconditional", "gaussian", metric="inside_room", direction="higher", scale=1.0),
    Claim("prior_beats_gaussian_path", "the unconditional prior beats the Gaussian fit on clear paths",
          "unconditional", "gaussian", metric="clear_path", direction="higher", scale=1.0),
)
COLUMNS = (("floor accuracy", "label_accuracy", 1.0), ("cameras inside", "inside_room", 1.0),
           ("clear paths", "clear_path", 1.0),
           ("step ratio", "step_ratio", 1.0), ("turn ratio", "turn_ratio", 1.0),
           ("NN-train ratio (latents)", "nn_train_ratio", 1.0), ("NN-train ratio (frames)", "nn_train_frames_ratio", 1.0))
STAGE1 = (("PSNR (dB)", "psnr"), ("depth L1", "depth_l1"), ("rotation error (deg)", "rotation_error_deg"),
          ("translation error", "translation_error"))


def steps(stage1: int, prior: int) -> tuple[str, ...]:
    """Both stages' steps, each evaluated (and checkpointed) once, at its end."""
    return (f"train.steps = {stage1}", f"train.eval_every = {stage1}", f"train.checkpoint_every = {stage1}",
            f"prior/train.steps = {prior}", f"prior/train.eval_every = {prior}",
            f"prior/train.checkpoint_every = {prior}", f"LatentPrior.draws = {TEST_DRAWS + 1}")


SMOKE = (*steps(4, 4), "NUM_SCENES = 6", "ProceduralRooms.resolution = 8", "ProceduralRooms.frames = 3",
         "train.batch_size = 2", "prior/train.batch_size = 8", "train.log_every = 2",
         "SceneAutoDecoding.eval_trajectories = 2", "SceneAutoDecoding.rays_per_frame = 4", "GAUDI.plane_resolution = 8",
         "GAUDI.upsamplings = 1", "GAUDI.decoder_channels = 4", "GAUDI.plane_channels = 4", "GAUDI.field_hidden = 8",
         "GAUDI.samples_per_ray = 6", "GAUDI.pose_hidden = 16", "LatentDenoiser.width = 16", "LatentDenoiser.blocks = 1",
         "GaussianDiffusion.steps = 20", "DDIMSampler.steps = 3", "LatentPrior.eval_samples = 4",
         "LatentPrior.eval_batches = 1", "LatentPrior.strip_samples = 2", "LatentPrior.video_frames = 3",
         "LatentPrior.interpolation_steps = 2", "LatentPrior.feature_steps = 5")
BUDGETS = {
    "smoke": Budget("smoke", seeds=(0,), bindings=SMOKE, note="6 rooms of 8x8 pixels, 4 steps per stage: the pipeline"),
    "cpu": Budget("cpu", seeds=tuple(range(5)), bindings=steps(1500, 2000),
                  note="stage 1 1,500 steps (half the gin file's 3,000), each prior 2,000 steps; five training seeds"),
    "gpu": Budget("gpu", seeds=tuple(range(5)), bindings=steps(3000, 2000),
                  note="stage 1 3,000 steps, each prior 2,000, five training seeds: one GPU machine, not run yet"),
}


def measure() -> dict[str, Any]:
    """Both stages' steps and batches, the draws, the scenes per draw, the rooms and frames."""
    import gin

    from engine.program import configured_steps
    prior_steps, prior_batch = configured_steps("prior"), gin.query_parameter("prior/train.batch_size")
    return {"stage-1 steps": configured_steps(), "stage-1 batch": gin.query_parameter("train.batch_size"),
            "prior steps": prior_steps, "prior batch": prior_batch,
            "draws": gin.query_parameter("LatentPrior.draws"),
            "scenes per draw": gin.query_parameter("LatentPrior.eval_samples"),
            "rooms": _resolved(gin.query_parameter("ProceduralRooms.count")),
            "frames": _resolved(gin.query_parameter("ProceduralRooms.frames"))}


def _resolved(value: Any) -> Any:
    """A macro's value (`%NUM_SCENES`) rather than the reference to it."""
    import gin
    if isinstance(value, gin.config.ConfigurableReference) and value.configurable.name == "macro":
        return value.scoped_configurable_fn()
    return value


def extract(result: Any) -> dict[str, Any]:
    """Draw 0 as the validation split, the mean of draws 1.. as the test split (every test draw's
    value kept), and stage 1's reconstruction metrics."""
    finished = result.prior is not None and result.prior.finished
    if not finished:
        return {"metrics": {}, "finished": False, "extra": {}}
    logged = {k: float(v) for k, v in result.prior.metrics["train"].items() if isinstance(v, (int, float))}
    draws: dict[str, list[float]] = {}
    metrics: dict[str, float] = {}
    for key, value in logged.items():
        if not key.startswith("draw_"):
            continue
        index, name = key[len("draw_"):].split("/", 1)
        if int(index) == 0:
            metrics[f"validation/{name}"] = value
        else:
            draws.setdefault(f"test/{name}", []).append(value)
    metrics.update({key: sum(values) / len(values) for key, values in draws.items()})
    stage1 = {k: float(v) for k, v in result.autodecoder.metrics["train"].items() if isinstance(v, (int, float))}
    return {"metrics": metrics, "finished": True, "extra": {"draws": draws, "stage1": stage1}}


def autodecoder_folder(root: str, budget: str) -> str:
    """The stage-1 folder every arm of one seed shares ('{seed}' left for the seed bindings)."""
    return os.path.join(root, NAME, budget, "autodecoder", "seed_{seed}")


def make_study(root: str, budget: str) -> Study:
    """The study whose runs live under `root`; every arm of seed s binds the same auto-decoder folder."""
    notes = (
        "Bed: 160 procedural box rooms x 8 frames at 32x32 (`gin/gaudi/gaudi_rooms.gin`), of half widths 0.3-0.8, "
        "each camera path anywhere in its room at least 0.15 from the walls, so where a path may go depends on the "
        "room's size. Columns: KID of the "
        "rendered frames against the real frames in a small floor-colour classifier's features; floor accuracy: "
        "how often that classifier sees the asked floor colour (training latents: their true colour; the "
        "unconditional prior and the Gaussian fit cannot be asked, so they have none); cameras inside a closed "
        "room (a ray in every direction of 26 around the camera that the training views reach stops at a surface "
        "beyond 0.1; straight up, never in view, is not asked: the stage-1 table gives, per training seed, how "
        "many directions are asked and how many of the training latents' cameras pass and yet see nothing "
        "straight up); clear paths: the share of sampled scenes whose camera walk, straight from each frame's camera "
        "to the next, stays in free space of the scene's own field (opacity collected along it below 0.5; real "
        "walks keep clear of walls and objects, so a path that runs through matter was paired with a room it does "
        "not fit); step and turn ratio of sampled paths over real ones (1 = real); NN-train ratio (latents): "
        "distance "
        "from a sampled latent to its nearest training latent over the typical distance between training latents; "
        "NN-train ratio (frames): the same with a sample's rendered frames against the real frames of the "
        "training trajectories (about 0 = copies of training scenes; the training-latents row shows what an "
        "exact copy scores, its reconstruction error; the Gaussian row what a new but crude scene scores).",
        f"Each run scores {TEST_DRAWS} test draws of 32 sampled scenes (draw k of a seed uses the same sampling "
        "noise in every arm, so the guided and unguided rows of one draw start from the same noise), and each "
        "training seed trains its own auto-decoder and priors. With 5 or more training seeds (the cpu and gpu "
        "budgets) the unit of every mean, interval and claim is a training seed, its test draws averaged, so an "
        "interval covers the spread between auto-decoders and priors; with fewer it is a (seed, draw) pair.",
        "The auto-decoder has no held-out scenes (it fits every trajectory), so the splits are draws: draw 0 is the "
        "validation draw, draws 1-5 the test draws. KID of the conditional rows is not comparable with the "
        "unconditional ones: they ask for exactly balanced floor colours, which removes the floor-colour sampling "
        "noise every other row carries; compare the conditional rows with each other.")
    return Study(name=NAME, title="GAUDI, procedural rooms: KID of frames rendered from sampled latents", arms=ARMS,
                  budgets=BUDGETS, claims=CLAIMS, metric="kid", direction="lower", select_split="validation",
                  report_split="test", measure=measure, extract=extract, columns=COLUMNS, notes=notes,
                  draws=TEST_DRAWS,
                  seed_bindings=(f"gaudi.autodecoder_workdir = '{autodecoder_folder(root, budget)}'",))


def analysis(results: dict, root: str) -> dict:
    """Stage 1's reconstruction of its training trajectories, per training seed (every arm shares it),
    and its `enclosure_diagnosis` (stage 1 in the seed's folder under `root`)."""
    first = results["arms"][0]["runs"]
    folder = autodecoder_folder(root, results["budget"]["name"])
    rows = []
    for run in first:
        diagnosis = enclosure_diagnosis(folder.format(seed=run["seed"]))
        rows.append({"seed": run["seed"], **{m: run["extra"]["stage1"].get(m, float("nan")) for _, m in STAGE1},
                     "asked": diagnosis["directions asked"], "open_above": diagnosis["open above"]})
    columns = ([["training seed", "{seed}"]] + [[label, f"{{{metric}:.3f}}"] for label, metric in STAGE1]
               + [["directions asked (of 26)", "{asked}"],
                  ["training cameras inside, open straight up", "{open_above:.1%}"]])
    return {"title": "Stage 1, whole frames of the training trajectories rendered from their true cameras, and "
                     "their decoded camera paths; the enclosure test's directions, and the share of the training "
                     "latents' cameras (decoded paths) that pass it and see no surface straight up",
            "columns": columns, "rows": rows}


def enclosure_diagnosis(folder: str) -> dict[str, Any]:
    """Why the enclosure test leaves 'straight up' out, measured on the finished stage 1 in `folder`:
    how many of the 26 directions its training views reach (the directions the test asks), and the
    share of its training latents' cameras (decoded paths, every frame, as the cameras-inside column
    renders them) that pass the test and yet see no surface straight up: views that never look up
    leave the field above them unconstrained."""
    import torch

    from engine import checkpoint, config
    from launch.experiment import parsed_config
    from tasks.scenes.latent_prior import enclosure_directions
    from tasks.scenes.metrics import enclosed
    with parsed_config([os.path.join(folder, "config.gin")], []):
        task, model = config.built("gaudi.task"), config.built("train.model")
    model.load_state_dict(checkpoint.load_weights(checkpoint.latest(folder)))
    model.eval()
    scenes = task.scenes
    directions = enclosure_directions(scenes)
    with torch.no_grad():
        z = model.latents()
        count = len(z)
        z_scene, z_pose = model.split(z)
        _, translations = model.pose_decoder(z_pose, torch.as_tensor(scenes.times[0]).expand(count, -1))
        planes = model.scene_decoder(z_scene)
        inside = enclosed(model.render_rays, planes, translations, directions=directions)
        up = enclosed(model.render_rays, planes, translations, directions=torch.tensor([[0.0, 1.0, 0.0]]))
    return {"directions asked": len(directions), "open above": float((inside & ~up).float().mean())}


def strips(results: dict, root: str, out: str) -> list[str]:
    """PNG strips from the first seed's TensorBoard images: stage 1's reconstructions, each arm's samples."""
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    budget, seed = results["budget"]["name"], results["budget"]["seeds"][0]
    sources = [("stage1", autodecoder_folder(root, budget).format(seed=seed), "reconstruction")]
    sources += [(arm["name"], os.path.join(protocol.REPO_ROOT, arm["runs"][0]["workdir"], "prior"), "samples")
                for arm in results["arms"]]
    written = []
    for name, folder, tag in sources:
        events = EventAccumulator(os.path.join(folder, "tb"), size_guidance={"images": 0})
        events.Reload()
        if f"eval_train/{tag}" not in events.Tags()["images"]:
            continue
        image = Image.open(io.BytesIO(events.Images(f"eval_train/{tag}")[-1].encoded_image_string))
        written.append(os.path.join(out, results["study"], f"{budget}_{tag}_{name}.png"))
        image.resize((image.width * 3, image.height * 3), Image.NEAREST).save(written[-1])
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    protocol.add_arguments(parser, plan=True)
    args = parser.parse_args(argv)
    if args.budget not in BUDGETS:
        parser.error(f"unknown budget {args.budget!r}; choose from {list(BUDGETS)}")
    root, out = os.path.abspath(args.workdir), os.path.abspath(args.out)
    study = make_study(root, args.budget)
    if protocol.printed_plan([study], args):
        return 0
    command = shlex.join(["python", "launch/reproduce.py", "gaudi", *argv])
    load_start = load_average()
    code = protocol.main([study], args, command)
    if code == 0:
        from launch import tables
        results = tables.load(f"{NAME}/{args.budget}", out)
        stage1 = analysis(results, root)
        psnr = [row["psnr"] for row in stage1["rows"]]
        protocol.write_analysis(os.path.join(out, NAME, f"{args.budget}_analysis.json"), f"{NAME}/{args.budget}", command,
                       [results], {"stage1": stage1}, {"seeds": len(psnr), "psnr": sum(psnr) / len(psnr)},
                       "Stage 1 reconstructs its training frames at {psnr:.1f} dB PSNR (mean over {seeds} training "
                       "seed(s)).", load_start)
        print("wrote " + ", ".join(strips(results, root, out)))
    return code
