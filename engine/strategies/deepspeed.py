"""`deepspeed`: DeepSpeed ZeRO stages 1-3 with the config built from gin bindings.

Pitfalls handled here (docs/design.md, "Library facts"): gradient clipping is always set
explicitly (DeepSpeed's default changed to 1.0); the schedule is handed to DeepSpeed as a
callable so it steps at accumulation boundaries and is saved and resumed; `engine.step()` runs
after every micro-batch; untested optimizers (anything but torch Adam/AdamW) are allowed by a
knob. DeepSpeed is imported only when this strategy is chosen.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any

import gin
import torch

from engine.errors import ConfigError
from engine.strategies.base import Strategy

TAG = "deepspeed"
_EVALUATION = -1  # a sub-module id no module has: holds gathered parameters during `evaluating`


@gin.configurable
class DeepSpeed(Strategy):
    """ZeRO data parallelism: stage 1 shards optimizer state, 2 also gradients, 3 also parameters."""

    name = "deepspeed"
    can_skip_steps = False  # DeepSpeed's step cannot be dropped from outside (fp16 skips on its own)

    def __init__(self, *, stage: int = 2, offload_optimizer: bool = False, offload_parameters: bool = False,
                 bf16: bool | None = None, overlap_comm: bool = False, reduce_bucket_size: int = 50_000_000,
                 allow_untested_optimizer: bool = True, extra_config: dict | None = None) -> None:
        super().__init__()
        if stage not in (0, 1, 2, 3):
            raise ConfigError(f"DeepSpeed.stage must be 0, 1, 2 or 3, got {stage!r}")
        if offload_parameters and stage != 3:
            raise ConfigError("DeepSpeed.offload_parameters needs stage 3")
        self.stage = stage
        self.offload_optimizer = offload_optimizer
        self.offload_parameters = offload_parameters
        self.bf16 = bf16
        self.overlap_comm = overlap_comm
        self.reduce_bucket_size = reduce_bucket_size
        self.allow_untested_optimizer = allow_untested_optimizer
        self.extra_config = dict(extra_config or {})
        self.engine = None
        self._last_micro = True

    @property
    def shards_parameters(self) -> bool:
        return self.stage == 3

    def build_config(self, settings: Any) -> dict:
        """The DeepSpeed JSON config, from this strategy's and the run's settings."""
        local = settings.batch_size // self.world_size
        micro = settings.micro_batch_size or local
        zero: dict[str, Any] = {"stage": self.stage, "overlap_comm": self.overlap_comm,
                                "contiguous_gradients": True, "reduce_bucket_size": self.reduce_bucket_size}
        if self.offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu", "pin_memory": self.device.type == "cuda"}
        if self.offload_parameters:
            zero["offload_param"] = {"device": "cpu", "pin_memory": self.device.type == "cuda"}
        if self.stage == 3:
            zero["stage3_gather_16bit_weights_on_model_save"] = False
        bf16 = settings.precision == "bf16" if self.bf16 is None else self.bf16
        config = {
            "train_micro_batch_size_per_gpu": micro,
            "gradient_accumulation_steps": local // micro,
            "train_batch_size": settings.batch_size,
            # Always explicit: DeepSpeed >= 0.19.3 clips at 1.0 when this key is absent.
            "gradient_clipping": float(settings.grad_clip or 0.0),
            "zero_optimization": zero,
            "bf16": {"enabled": bf16},
            "zero_allow_untested_optimizer": self.allow_untested_optimizer,
            "steps_per_print": 2**31 - 1,
            "wall_clock_breakdown": False,
        }
        config.update(self.extra_config)
        return config

    def prepare(self, module, make_optimizer, make_schedule, settings):
        import logging
        if self.device.type == "cpu":
            # DeepSpeed picks its own accelerator (CUDA wherever torch sees a GPU) and would put
            # each rank on a GPU even where the engine runs on the CPU ($GINTRAIN_DEVICE=cpu).
            os.environ.setdefault("DS_ACCELERATOR", "cpu")
            if os.environ["DS_ACCELERATOR"] != "cpu":
                raise ConfigError(f"the run is on the CPU but $DS_ACCELERATOR={os.environ['DS_ACCELERATOR']!r}")

        import deepspeed
        deepspeed.utils.logger.setLevel(logging.WARNING)  # its INFO lines drown the run's own log
        silence_deprecated_collectives()
        if self.device.type == "cpu" and self.is_main and not _shm_extension_built():
            print("DeepSpeed: compiling its shared-memory communication extension (once per machine, "
                  "about 20-30 s on 2 cores)", flush=True)
        module = module.to(self.device)
        # A module that runs its children a data-dependent number of times (ACT) is fetched as one
        # leaf: hooks inside it would gather a different number of times on each rank.
        leaves = sorted({type(m) for m in module.modules() if getattr(m, "shard_as_one", False)}, key=str)
        if self.stage == 3 and leaves:
            deepspeed.utils.set_z3_leaf_modules(module, leaves)
        optimizer = make_optimizer(module)
        self.engine, self.optimizer, _, self.schedule = deepspeed.initialize(
            model=module, optimizer=optimizer, lr_scheduler=make_schedule, config=self.build_config(settings),
            dist_init_required=False)
        self.module = self.engine.module
        self.model = self.engine
        if settings.compile:
            self.engine.compile()
        return self.model

    def accumulating(self, last: bool):
        self._last_micro = last
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def evaluating(self):
        """ZeRO-3: gather every partitioned parameter once (a collective) and hold it, so that no
        module hook releases or fetches it during the evaluation (which may call the module's
        methods directly, or run on rank 0 alone); partition everything again afterwards.
        A parameter is held by a sentinel in `ds_active_sub_modules`: DeepSpeed releases a
        parameter only when no active sub-module uses it."""
        if self.stage != 3:
            yield
            return
        import deepspeed
        params = [p for p in self.module.parameters() if hasattr(p, "ds_active_sub_modules")]
        with deepspeed.zero.GatheredParameters(params):
            for p in params:
                p.ds_active_sub_modules.add(_EVALUATION)
            try:
                yield
            finally:
                for p in params:
                    p.ds_active_sub_modules.discard(_EVALUATION)

    def backward(self, loss: torch.Tensor, accumulation_steps: int) -> None:
        self.engine.backward(loss)  # DeepSpeed divides by its gradient_accumulation_steps
        if not self._last_micro:
            self.engine.step()  # not a boundary: DeepSpeed only counts the micro-step

    def parameters(self):
        return self.module.parameters()

    def clip_gradients(self, max_norm):
        return None  # DeepSpeed clips inside engine.step(), with the configured gradient_clipping

    def grad_norm_after_step(self):
        norm = self.engine.get_global_grad_norm()
        return None if norm is None else torch.as_tensor(float(norm))

    def optimizer_step(self) -> None:
        self.engine.step()

    def skip_step(self) -> None:  # pragma: no cover - refused at configuration time
        raise ConfigError("DeepSpeed cannot skip steps")

    @property
    def learning_rate(self) -> float:
        return float(self.engine.get_lr()[0])

    def local_state_bytes(self) -> dict[str, int]:
        params = 0
        for p in self.module.parameters():
            held = p.ds_tensor if hasattr(p, "ds_tensor") else p
            params += held.numel() * held.element_size()
        inner = getattr(self.optimizer, "optimizer", self.optimizer)
        state = sum(v.numel() * v.element_size() for s in inner.state.values()
                    for v in s.values() if isinstance(v, torch.Tensor))
        return {"parameters": int(params), "optimizer": int(state)}

    def save(self, directory: str, train_state: dict) -> None:
        self.engine.save_checkpoint(directory, tag=TAG, client_state={"train_state": train_state})
        self.save_rank_state(directory, train_state)

    def load(self, directory: str) -> dict:
        path, client_state = self.engine.load_checkpoint(directory, tag=TAG, load_optimizer_states=True,
                                                         load_lr_scheduler_states=True)
        if path is None:
            raise ConfigError(f"DeepSpeed found no checkpoint under {directory!r}")
        if os.path.isfile(os.path.join(directory, f"train_state_rank{self.rank}.pt")):
            return self.load_rank_state(directory)
        return client_state["train_state"]


def consolidate(directory: str) -> dict[str, torch.Tensor]:
    """fp32 weights gathered from the ZeRO partitions with DeepSpeed's own zero_to_fp32 tooling."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    return get_fp32_state_dict_from_zero_checkpoint(directory, tag=TAG)


def _shm_extension_built() -> bool:
    """Whether DeepSpeed's CPU communication extension is already in torch's extension cache
    (DeepSpeed compiles it, silently, the first time a CPU process group starts)."""
    from torch.utils.cpp_extension import _get_build_directory
    folder = _get_build_directory("deepspeed_shm_comm", verbose=False)
    return os.path.isdir(folder) and any(name.endswith(".so") for name in os.listdir(folder))


def silence_deprecated_collectives() -> None:
    """DeepSpeed's ZeRO calls torch collectives that torch 2.13 deprecates: one FutureWarning per
    call (43 in a 10-step ZeRO-3 run), nothing a user can act on, woven through the progress bar."""
    warnings.filterwarnings("ignore", category=FutureWarning,
                            message=r"`torch\.distributed\.(all_gather_into_tensor|reduce_scatter_tensor)` is deprecated")
