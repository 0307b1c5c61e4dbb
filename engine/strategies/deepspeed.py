"""`deepspeed`: DeepSpeed ZeRO stages 1-3 with the config built from gin bindings.

Pitfalls handled here (docs/design.md, "Library facts"): gradient clipping is always set
explicitly (DeepSpeed's default changed to 1.0); the schedule is handed to DeepSpeed as a
callable so it steps at accumulation boundaries and is saved and resumed; `engine.step()` runs
after every micro-batch; untested optimizers (anything but torch Adam/AdamW) are allowed by a
knob. DeepSpeed is imported only when this strategy is chosen.

Memory (docs/design.md, "Memory per rank on the CPU"): buckets and optimizer sub-groups are sized
from the model (`bucket_size`) instead of DeepSpeed's GPU-sized defaults, ZeRO 1-2's parameter
groups are split so the optimizer steps bounded pieces, and in fp32 the master weights are the
weights themselves (`share_fp32_weights`), not a second copy.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any

import gin
import torch

from engine.errors import ConfigError, require_int
from engine.strategies.base import Strategy

TAG = "deepspeed"
_EVALUATION = -1  # a sub-module id no module has: holds gathered parameters during `evaluating`
MIN_BUCKET, MAX_BUCKET = 1_000_000, 50_000_000  # elements: the range `bucket_size = None` picks from


@gin.configurable
class DeepSpeed(Strategy):
    """ZeRO data parallelism: stage 1 shards optimizer state, 2 also gradients, 3 also parameters."""

    name = "deepspeed"
    can_skip_steps = False  # DeepSpeed's step cannot be dropped from outside (fp16 skips on its own)

    def __init__(self, *, stage: int = 2, offload_optimizer: bool = False, offload_parameters: bool = False,
                 bf16: bool | None = None, overlap_comm: bool = False, bucket_size: int | None = None,
                 reduce_bucket_size: int | None = None, share_fp32_weights: bool = True,
                 allow_untested_optimizer: bool = True, zero_config: dict | None = None,
                 extra_config: dict | None = None) -> None:
        """`bucket_size` (elements) bounds every buffer ZeRO sizes by a count: the gradient-reduction
        bucket, the all-gather bucket, and at stage 3 the prefetch, the parameters held gathered
        (twice it) and the reuse distance; it is also the size of the optimizer's sub-groups (stage 3's
        `sub_group_size`; at stages 1-2 the engine splits the parameter groups into groups of about
        this size), which bounds the optimizer step's temporaries. None sizes it from the model:
        1/16 of its parameters at stages 1-2 and 1/64 at stage 3 (whose gathered parameters, prefetch
        and sub-groups all scale with it), at least 1M and at most 50M elements (DeepSpeed's own defaults, 5e8
        and 1e9 elements, are 2 GB and 4 GB fp32 buffers, and held a whole partition's temporaries).
        `reduce_bucket_size` overrides the reduction bucket alone. `share_fp32_weights`: where the
        model's weights are fp32, the optimizer updates this rank's partition of them in place
        instead of a second fp32 copy (DeepSpeed's fp32 master weights, a duplicate without bf16);
        the values are the same either way. `zero_config` entries go into the `zero_optimization`
        section last (any DeepSpeed key, e.g. {'stage3_param_persistence_threshold': 0});
        `extra_config` entries replace whole top-level sections."""
        super().__init__()
        if stage not in (0, 1, 2, 3):
            raise ConfigError(f"DeepSpeed.stage must be 0, 1, 2 or 3, got {stage!r}")
        if offload_parameters and stage != 3:
            raise ConfigError("DeepSpeed.offload_parameters needs stage 3")
        for name, value in (("bucket_size", bucket_size), ("reduce_bucket_size", reduce_bucket_size)):
            if value is not None:
                require_int(value, f"DeepSpeed.{name}", low=1, hint="None sizes it from the model")
        self.stage = stage
        self.offload_optimizer = offload_optimizer
        self.offload_parameters = offload_parameters
        self.bf16 = bf16
        self.overlap_comm = overlap_comm
        self.bucket_size = bucket_size
        self.reduce_bucket_size = reduce_bucket_size
        self.share_fp32_weights = share_fp32_weights
        self.allow_untested_optimizer = allow_untested_optimizer
        self.zero_config = dict(zero_config or {})
        self.extra_config = dict(extra_config or {})
        self.engine = None
        self._last_micro = True

    def bucket_elements(self, parameters: int) -> int:
        """`bucket_size`, or for None: 1/16 of the model's `parameters` (1/64 at stage 3), between 1M
        and 50M elements
        (a multiple of 1024: DeepSpeed wants the all-gather bucket aligned)."""
        if self.bucket_size is not None:
            return self.bucket_size
        share = 64 if self.stage == 3 else 16  # ZeRO-3 at 300M: 0.63x DDP's peak at 1/16, 0.58x at 1/64
        return int(min(max(parameters // share, MIN_BUCKET), MAX_BUCKET)) // 1024 * 1024

    @property
    def shards_parameters(self) -> bool:
        return self.stage == 3

    def build_config(self, settings: Any, parameters: int = 0) -> dict:
        """The DeepSpeed JSON config, from this strategy's and the run's settings; `parameters` (the
        model's count) sizes the buckets where `bucket_size` is None."""
        local = settings.batch_size // self.world_size
        micro = settings.micro_batch_size or local
        bucket = self.bucket_elements(parameters)
        zero: dict[str, Any] = {"stage": self.stage, "overlap_comm": self.overlap_comm,
                                "contiguous_gradients": True, "reduce_bucket_size": self.reduce_bucket_size or bucket,
                                "allgather_bucket_size": bucket}
        if self.stage == 3:
            zero.update(stage3_prefetch_bucket_size=bucket, stage3_max_live_parameters=2 * bucket,
                        stage3_max_reuse_distance=bucket, sub_group_size=bucket)
        if self.offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu", "pin_memory": self.device.type == "cuda"}
        if self.offload_parameters:
            zero["offload_param"] = {"device": "cpu", "pin_memory": self.device.type == "cuda"}
        if self.stage == 3:
            zero["stage3_gather_16bit_weights_on_model_save"] = False
        zero.update(self.zero_config)
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
        parameters = sum(p.numel() for p in module.parameters())
        if self.stage in (1, 2):
            split_param_groups(optimizer, self.bucket_elements(parameters))
        self.engine, self.optimizer, _, self.schedule = deepspeed.initialize(
            model=module, optimizer=optimizer, lr_scheduler=make_schedule,
            config=self.build_config(settings, parameters), dist_init_required=False)
        if self.share_fp32_weights and not (self.offload_optimizer or self.offload_parameters):
            share_fp32_weights(self.engine.optimizer)
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
        """Parameters (this rank's partitions at stage 3); the optimizer's state plus ZeRO's fp32
        master weights where they are a copy of their own (not shared with the weights, see
        `share_fp32_weights`): memory the optimizer holds beside what DDP's would."""
        params, weights = 0, set()
        for p in self.module.parameters():
            held = p.ds_tensor if hasattr(p, "ds_tensor") else p
            params += held.numel() * held.element_size()
            weights.add(held.untyped_storage().data_ptr())
        inner = getattr(self.optimizer, "optimizer", self.optimizer)
        state = sum(v.numel() * v.element_size() for s in inner.state.values()
                    for v in s.values() if isinstance(v, torch.Tensor))
        for master in _fp32_masters(self.optimizer):
            if master.untyped_storage().data_ptr() not in weights:
                state += master.numel() * master.element_size()
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


def split_param_groups(optimizer: torch.optim.Optimizer, size: int) -> None:
    """Split every parameter group of `optimizer` (before its first step) into consecutive groups of
    about `size` elements with the same options. ZeRO stages 1-2 flatten each group's partition into
    one tensor and step it as one: a whole partition's temporaries at once (AdamW's update holds two:
    as much as the model's weights at 2 ranks). A parameter larger than `size` is a group of its own."""
    groups = []
    for group in optimizer.param_groups:
        options = {k: v for k, v in group.items() if k != "params"}
        chunk: list[torch.Tensor] = []
        elements = 0
        for param in group["params"]:
            if chunk and elements + param.numel() > size:
                groups.append({**options, "params": chunk})
                chunk, elements = [], 0
            chunk.append(param)
            elements += param.numel()
        if chunk:
            groups.append({**options, "params": chunk})
    optimizer.param_groups = []
    for group in groups:
        optimizer.add_param_group(group)


def _fp32_masters(zero_optimizer: Any) -> list[torch.Tensor]:
    """ZeRO's fp32 master partitions on this rank (none at stage 0 or under offload to NVMe)."""
    masters = getattr(zero_optimizer, "single_partition_of_fp32_groups", None)  # stages 1-2
    if masters is None:
        masters = getattr(zero_optimizer, "fp32_partitioned_groups_flat", None)  # stage 3
    return [m for m in masters or [] if isinstance(m, torch.Tensor) and m.numel()]


def share_fp32_weights(zero_optimizer: Any) -> int:
    """Point ZeRO's fp32 master partitions at this rank's partition of the fp32 weights themselves,
    where they are a copy of equal dtype (fp32 training: no bf16): the optimizer then updates the
    weights in place, and DeepSpeed's copy of master into weights after each step is one of a tensor
    onto itself, which torch skips. Stage 1-2 always copies; stage 3 means to share (its
    `_create_fp32_partitions`) but compares a torch.device with a device name, which differ on the
    CPU. Returns the bytes saved on this rank."""
    pairs = []
    if hasattr(zero_optimizer, "single_partition_of_fp32_groups"):  # stages 1-2
        for i, master in enumerate(zero_optimizer.single_partition_of_fp32_groups):
            partition_id = torch.distributed.get_rank(group=zero_optimizer.real_dp_process_group[i])
            pairs.append((master, zero_optimizer.parallel_partitioned_bit16_groups[i][partition_id]))
    elif hasattr(zero_optimizer, "fp32_partitioned_groups_flat"):  # stage 3
        pairs = list(zip(zero_optimizer.fp32_partitioned_groups_flat, zero_optimizer.fp16_partitioned_groups_flat))
    saved = 0
    for master, weights in pairs:
        if weights is None or master.dtype != weights.dtype or master.device != weights.device or \
                master.shape != weights.shape or master.untyped_storage().data_ptr() == weights.untyped_storage().data_ptr():
            continue
        if not torch.equal(master, weights):  # not a copy: leave DeepSpeed's layout alone
            continue
        saved += master.numel() * master.element_size()
        master.data = weights.data
    if saved and hasattr(zero_optimizer, "single_partition_of_fp32_groups"):
        # Stage 1-2 linked each parameter to views of the old masters (safe_get_full_fp32_param,
        # universal checkpoints): link them to the shared ones, which frees the old.
        zero_optimizer._link_all_hp_params()
    return saved


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
