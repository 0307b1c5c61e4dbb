"""Achieved FLOP/s and model FLOPs utilisation (MFU) of a training run.

The FLOPs per example are the forward FLOPs the engine measures once at start
(`program._check_model_on_task`); training counts 3x that: the backward pass costs about twice
the forward (gradients with respect to activations and to weights), the usual convention of
Kaplan et al. 2020 ("Scaling laws", sec. 2.1: C ~ 6N per token = 3 x the 2N forward) and the
PaLM paper's MFU (Chowdhery et al. 2022, appendix B). It overstates the work of a model with
frozen parts (a teacher gets no backward) and ignores activation recomputation, as MFU does by
definition (recomputed FLOPs are not "model" FLOPs).

MFU is achieved FLOP/s over the device's peak dense FLOP/s at the run's precision. Peaks come
from the vendor's datasheets (`PEAKS`); an accelerator not in the table, and the CPU (whose peak
depends on cores, clocks and vector units that torch does not report), get no MFU, only the
achieved rate.
"""
from __future__ import annotations

import re
from typing import NamedTuple

import torch

#: Training FLOPs per forward FLOP: forward + backward (2x forward) = 3x forward.
TRAINING_FACTOR = 3

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")


class Peak(NamedTuple):
    """Peak dense FLOP/s of one accelerator per precision (None: no hardware support), and where
    the numbers come from. NVIDIA datasheets list tensor-core rates "with sparsity" (2:4
    structured); the dense rate, the one dense training can reach, is half of that."""

    pattern: str  # a regex matched, case-insensitively, against torch.cuda.get_device_name()
    fp32: float | None
    tf32: float | None
    bf16: float | None
    fp16: float | None
    source: str


T = 1e12
#: Most specific pattern first: the first match wins ("H100 PCIe" before plain "H100").
PEAKS: tuple[Peak, ...] = (
    Peak(r"H100.*NVL", 60 * T, 417.5 * T, 835.5 * T, 835.5 * T,
         "NVIDIA H100 Tensor Core GPU datasheet, H100 NVL column (TF32 835, BF16/FP16 1671 TFLOPS with "
         "sparsity), https://www.nvidia.com/en-us/data-center/h100/"),
    Peak(r"H100.*PCI", 51 * T, 378 * T, 756.5 * T, 756.5 * T,
         "NVIDIA H100 Tensor Core GPU datasheet, H100 PCIe column (TF32 756, BF16/FP16 1513 TFLOPS with "
         "sparsity), https://www.nvidia.com/en-us/data-center/h100/"),
    Peak(r"H100", 67 * T, 494.5 * T, 989.5 * T, 989.5 * T,
         "NVIDIA H100 Tensor Core GPU datasheet, H100 SXM column (TF32 989, BF16/FP16 1979 TFLOPS with "
         "sparsity), https://www.nvidia.com/en-us/data-center/h100/"),
    Peak(r"H200.*NVL", 60 * T, 417.5 * T, 835.5 * T, 835.5 * T,
         "NVIDIA H200 Tensor Core GPU datasheet, H200 NVL column (TF32 835, BF16/FP16 1671 TFLOPS with "
         "sparsity), https://www.nvidia.com/en-us/data-center/h200/"),
    Peak(r"H200", 67 * T, 494.5 * T, 989.5 * T, 989.5 * T,
         "NVIDIA H200 Tensor Core GPU datasheet, H200 SXM column (TF32 989, BF16/FP16 1979 TFLOPS with "
         "sparsity), https://www.nvidia.com/en-us/data-center/h200/"),
    Peak(r"A100", 19.5 * T, 156 * T, 312 * T, 312 * T,
         "NVIDIA A100 Tensor Core GPU datasheet (SXM and PCIe alike: FP32 19.5, TF32 156, BF16/FP16 312 "
         "TFLOPS dense), https://www.nvidia.com/en-us/data-center/a100/"),
    Peak(r"\bL4\b", 30.3 * T, 60 * T, 121 * T, 121 * T,
         "NVIDIA L4 Tensor Core GPU datasheet (FP32 30.3; TF32 120, BF16/FP16 242 TFLOPS with sparsity), "
         "https://www.nvidia.com/en-us/data-center/l4/"),
    # Volta has no TF32 and no bf16 tensor cores: fp32 matmuls stay fp32, bf16 claims no peak.
    Peak(r"V100S", 16.4 * T, None, None, 130 * T,
         "NVIDIA V100 Tensor Core GPU datasheet, V100S PCIe column (FP32 16.4, Tensor 130 TFLOPS), "
         "https://www.nvidia.com/en-us/data-center/v100/"),
    Peak(r"V100.*PCI", 14 * T, None, None, 112 * T,
         "NVIDIA V100 Tensor Core GPU datasheet, V100 PCIe column (FP32 14, Tensor 112 TFLOPS), "
         "https://www.nvidia.com/en-us/data-center/v100/"),
    Peak(r"V100", 15.7 * T, None, None, 125 * T,
         "NVIDIA V100 Tensor Core GPU datasheet, V100 SXM2 column (FP32 15.7, Tensor 125 TFLOPS), "
         "https://www.nvidia.com/en-us/data-center/v100/"),
)


def find_peak(device_name: str | None) -> Peak | None:
    """The table's entry for a device name as torch reports it; None for an unknown device."""
    if not device_name:
        return None
    return next((p for p in PEAKS if re.search(p.pattern, device_name, re.IGNORECASE)), None)


def peak_flops_per_s(device_name: str | None, precision: str) -> float | None:
    """Peak dense FLOP/s of `device_name` at `precision` (one of PRECISIONS); None where unknown,
    so no MFU is claimed. TF32 on a device without it runs in plain fp32, so it gets that peak."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    peak = find_peak(device_name)
    if peak is None:
        return None
    value = getattr(peak, precision)
    return peak.fp32 if value is None and precision == "tf32" else value


def device_name(device: torch.device) -> str | None:
    """The accelerator's name as the peak table matches it; None on the CPU (no reliable peak)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return None


def run_precision(precision: str, strategy, device: torch.device) -> str:
    """The precision the run's matmuls run in, which picks the peak column: bf16 when
    `train.precision = 'bf16'` (autocast) or the strategy computes in bf16/fp16 itself
    (`DeepSpeed.bf16`, `FSDP.param_dtype`); otherwise fp32, or tf32 where CUDA fp32 matmuls may
    use TF32 (`torch.backends.cuda.matmul.fp32_precision = 'tf32'`, or the legacy `allow_tf32` /
    `torch.set_float32_matmul_precision('high')`, which set it too)."""
    param_dtype = getattr(strategy, "param_dtype", None)
    if precision == "bf16" or getattr(strategy, "bf16", None) is True or param_dtype == "bf16":
        return "bf16"
    if param_dtype == "fp16":
        return "fp16"
    if device.type == "cuda" and _cuda_matmul_uses_tf32():
        return "tf32"
    return "fp32"


def _cuda_matmul_uses_tf32() -> bool:
    """Read through the new API only: reading `allow_tf32` after a mix of old and new settings raises."""
    setting = torch.backends.cuda.matmul.fp32_precision
    if setting == "none":  # inherits the global setting
        setting = torch.backends.fp32_precision
    return setting == "tf32"


def achieved_flops_per_s(flops_per_example: float, examples_per_s: float, training: bool = True) -> float:
    """FLOP/s done at `examples_per_s`: forward FLOPs per example x examples/s, times 3 in training
    (forward + backward = 3x forward)."""
    return flops_per_example * examples_per_s * (TRAINING_FACTOR if training else 1)


def perf_metrics(flops_per_example: float, examples_per_s: float, world_size: int,
                 peak_per_device: float | None) -> dict[str, float]:
    """What a log step records. `examples_per_s` is the global rate (all ranks together), so
    `perf/achieved_gflops` is global and `perf/achieved_gflops_per_rank` its share on each rank
    (each rank trains its own slice of the batch); `perf/mfu` (a fraction) is the per-rank rate over
    one device's peak, only where the peak is known."""
    achieved = achieved_flops_per_s(flops_per_example, examples_per_s)
    metrics = {"perf/achieved_gflops": achieved / 1e9, "perf/achieved_gflops_per_rank": achieved / world_size / 1e9}
    if peak_per_device:
        metrics["perf/mfu"] = achieved / world_size / peak_per_device
    return metrics
