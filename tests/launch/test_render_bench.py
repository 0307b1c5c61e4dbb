"""The render benchmark at toy size: one row per sample count with the 16-sample row as its own
baseline, and the stage-1 step rate of the configured model."""
from __future__ import annotations

from launch.benchmarks import render

TINY = ["NUM_SCENES = 4", "ProceduralRooms.resolution = 8", "ProceduralRooms.frames = 2", "train.batch_size = 2",
        "SceneAutoDecoding.rays_per_frame = 4", "GAUDI.plane_resolution = 8", "GAUDI.upsamplings = 1",
        "GAUDI.decoder_channels = 4", "GAUDI.plane_channels = 4", "GAUDI.field_hidden = 8"]


def test_tiny_run_prints_rates_and_ratios_for_every_sample_count(tmp_path, capsys):
    bindings = [f"--bind={b}" for b in TINY + [f"ProceduralRooms.cache_dir = '{tmp_path}'"]]
    assert render.main([*bindings, "--samples", "16,32", "--rays", "32", "--repeats", "1", "--train-steps", "2",
                        "--warm-steps", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for mode in ("forward (evaluation)", "forward + backward (training)"):
        start = next(i for i, line in enumerate(lines) if line.startswith(mode))
        base, doubled = lines[start + 2].split(), lines[start + 3].split()
        assert base[0] == "16" and base[2:] == ["1.00", "1.00", "1.00"] and float(base[1]) > 0
        assert doubled[0] == "32" and doubled[3] == "2.00" and float(doubled[1]) > 0
    assert any(line.startswith("stage 1: ") and "2 trajectories x 2 frames x 4 rays = 16 rays" in line for line in lines)
