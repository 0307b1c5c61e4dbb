"""The configurable top-level programs: `train`, and `run`, which picks the program to call.

Only these functions are gin's entry points (t5x style), so everything below them stays free
to change. Multi-stage methods are programs that call `train` again inside a gin scope.
"""
from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import os
from typing import Any, Callable, Mapping, Sequence

import gin
import torch

from engine import analysis, checkpoint, config, distributed, optim, rundir
from engine.activation_checkpointing import checkpoint_activations
from engine.callbacks import Callback
from engine.data import frozen
from engine.errors import ConfigError
from engine.files import write_atomically
from engine.logging import RunLogger, read_metrics
from engine.task import Task
from engine.trainer import Settings, Trainer

_WORKDIR: contextvars.ContextVar[str | None] = contextvars.ContextVar("workdir", default=None)
_DRY_RUN: contextvars.ContextVar[bool] = contextvars.ContextVar("dry_run", default=False)
_CONFIG_CHANGE: contextvars.ContextVar[bool] = contextvars.ContextVar("config_change", default=False)
_LOCKS: contextvars.ContextVar[contextlib.ExitStack | None] = contextvars.ContextVar("locks", default=None)
_ROOT: contextvars.ContextVar[str | None] = contextvars.ContextVar("root", default=None)  # main()'s workdir


@dataclasses.dataclass
class TrainResult:
    """What `train` hands to the program that called it.

    Under a dry run (`--print-config`) nothing trains: `report` describes the run (sizes, FLOPs,
    strategy), `model` is the built, untrained model and `step` is 0. A multi-stage program
    passes such results on through its stages and returns their reports (`staged_report`).
    """

    workdir: str
    step: int
    steps: int  # the configured train.steps
    metrics: dict[str, dict[str, Any]]
    model: torch.nn.Module  # the plain module (strategy.module), not the wrapper
    checkpoint: str | None
    report: str | None = None
    #: Builds the model afresh, where `model` holds only shards (FSDP, ZeRO-3) and cannot be copied.
    rebuild: Callable[[], torch.nn.Module] | None = None

    @property
    def dry_run(self) -> bool:
        return self.report is not None

    @property
    def finished(self) -> bool:
        """Training reached its configured steps. False when a signal stopped it early (the
        program returns, and the same command resumes), and under a dry run."""
        return not self.dry_run and self.step >= self.steps

    def frozen_model(self, *, from_checkpoint: bool = True) -> torch.nn.Module:
        """A frozen copy of this stage's model for a later stage (a teacher, a decoder), with the
        weights of its last checkpoint (the path that works under every strategy) or, with
        `from_checkpoint=False`, those in memory. After a dry run: the untrained model. Under a
        strategy that shards the weights, the model is built again and always takes the
        checkpoint's (a finished stage's last checkpoint holds the weights in memory)."""
        if self.rebuild is not None and not self.dry_run:
            model, from_checkpoint = frozen(self.rebuild()), True
        else:
            model = frozen(copy.deepcopy(self.model))
        if from_checkpoint and not self.dry_run:
            if self.checkpoint is None:
                raise ConfigError(f"stage {self.workdir!r} wrote no checkpoint to take its model from")
            model.load_state_dict(checkpoint.load_weights(self.checkpoint))
        return model


def staged_report(stages: Mapping[str, TrainResult]) -> str:
    """A multi-stage program's dry-run report: each stage's report under the stage's name."""
    return "\n".join(f"# stage {name!r}:\n{result.report}" for name, result in stages.items())


def dry_run_text(result: Any) -> str:
    """What `--print-config` prints: the resolved config once, then the `report` of the result
    the program returned (every program returns one under a dry run)."""
    report = getattr(result, "report", None)
    if not isinstance(report, str):
        raise TypeError(f"the program returned {type(result).__name__} with no dry-run report")
    return f"{config.config_text().rstrip()}\n\n{report}"


def _build(factory_or_instance: Any, what: str) -> Any:
    if isinstance(factory_or_instance, (torch.nn.Module, Task)):
        return factory_or_instance
    if callable(factory_or_instance):
        try:
            return factory_or_instance()
        except TypeError as error:
            translated = config.translate_call_error(error)
            if translated is None:
                raise
            raise translated from None
    raise ConfigError(f"train.{what} must be a configurable reference like @Name or @Name(), "
                      f"got {factory_or_instance!r}")


def _check_model_on_task(module: torch.nn.Module, task: Task) -> int | None:
    """Run one tiny batch through the model before training; return forward FLOPs per example.

    Shapes that cannot work (vocabulary too small, sequence longer than the positions...)
    surface here as a ConfigError instead of a crash at step 1.
    """
    try:
        batch = task.example_batch(2)
    except StopIteration:
        raise ConfigError("the task yields no training batches") from None
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            flops = analysis.measured_flops(lambda: task.loss(module, batch))
    except (RuntimeError, IndexError, ValueError, TypeError) as error:
        if isinstance(error, ConfigError):
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if isinstance(error, TypeError) and "forward()" in first:
            # The task calls model(inputs, ...) in its own way; a model built for another task
            # family takes other arguments.
            raise ConfigError(f"{type(module).__name__}.forward does not take what {type(task).__name__} "
                              f"passes it: {first}") from None
        raise ConfigError(f"the model cannot run on the task's batches: {first}") from error
    finally:
        module.train(was_training)
    return flops // 2 if flops else None


def _describe(module: torch.nn.Module, task: Task, flops: int | None, settings: Settings, strategy) -> str:
    """The dry-run report of one `train` call (the config is printed once, by `dry_run_text`)."""
    params = analysis.count_parameters(module)
    lines = [f"# parameters: {params:,} ({analysis.format_count(params)})"]
    # A model that knows its own closed form (`flops_per_example(batch) -> float | None`, e.g.
    # T5's) is shown beside the count, so a reader sees how far the paper's formula is off.
    closed_form = getattr(module, "flops_per_example", None)
    closed = closed_form(task.example_batch(2)) if callable(closed_form) else None
    if flops:
        beside = f" (closed form: {analysis.format_count(closed)})" if closed else ""
        lines.append(f"# forward FLOPs per example (measured): {analysis.format_count(flops)}{beside}"
                     f"; training ~3x = {analysis.format_count(3 * flops)}")
    elif closed:
        lines.append(f"# forward FLOPs per example (closed form): {analysis.format_count(closed)}"
                     f"; training ~3x = {analysis.format_count(3 * closed)}")
    lines.append(f"# strategy: {strategy.name}, {strategy.world_size} rank(s), "
                 f"{settings.accumulation_steps(strategy.world_size)} micro-batch(es) per step")
    return "\n".join(lines)


@gin.configurable
def train(
    *,
    task: Any = gin.REQUIRED,
    model: Any = gin.REQUIRED,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    schedule: optim._Schedule | None = None,
    strategy: Any = None,
    steps: int = gin.REQUIRED,
    batch_size: int = gin.REQUIRED,
    micro_batch_size: int | None = None,
    precision: str = "fp32",
    grad_clip: float | None = 1.0,
    seed: int = 0,
    log_every: int = 50,
    eval_every: int = 0,
    eval_splits: Sequence[str] = ("eval",),
    checkpoint_every: int = 1000,
    keep_checkpoints: int | None = 3,
    init_from: str | None = None,
    compile: bool = False,
    nonfinite: str = "stop",
    prefetch: int | None = None,
    activation_checkpointing: bool | Sequence[str] = False,
    callbacks: Sequence[Callback] = (),
    workdir: str | None = None,
) -> TrainResult:
    """Train `model` on `task`; resume from `<workdir>/checkpoints/latest` if there is one."""
    workdir = workdir or _WORKDIR.get()
    if workdir is None:
        raise ConfigError("no workdir: pass --workdir (launch/run.py) or bind train.workdir")
    settings = Settings(steps=steps, batch_size=batch_size, micro_batch_size=micro_batch_size,
                        precision=precision, grad_clip=grad_clip, seed=seed, log_every=log_every,
                        eval_every=eval_every, eval_splits=tuple(eval_splits),
                        checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints,
                        nonfinite=nonfinite, compile=compile, prefetch=prefetch,
                        activation_checkpointing=activation_checkpointing)
    if strategy is None:
        from engine.strategies.single import SingleProcess
        strategy = SingleProcess()
    strategy.setup()
    settings.validate(strategy.world_size)
    if nonfinite == "skip" and not strategy.can_skip_steps:
        raise ConfigError(f"train.nonfinite = 'skip' is not supported by strategy {strategy.name!r}")

    task = _build(task, "task")
    if not isinstance(task, Task):
        raise ConfigError(f"train.task must build an engine.task.Task, got {type(task).__name__}")
    distributed.seed_everything(seed)
    module = _build(model, "model")
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"train.model must build a torch.nn.Module, got {type(module).__name__}")
    if init_from:
        checkpoint.load_into(module, checkpoint.load_weights(init_from), name="train.init_from", path=init_from)
    flops = _check_model_on_task(module, task)
    if _DRY_RUN.get():
        return TrainResult(workdir=workdir, step=0, steps=steps, metrics={}, model=module, checkpoint=None,
                           report=_describe(module, task, flops, settings, strategy))
    strategy.check_launch()
    _hold(workdir)  # one writer per run directory, before anything in it is read or written
    optimizer_cls = optimizer or gin.get_configurable("torch.optim.AdamW")

    def make_optimizer(mod: torch.nn.Module) -> torch.optim.Optimizer:
        return optimizer_cls(optim.param_groups(mod))

    def make_schedule(opt: torch.optim.Optimizer):
        return optim.make_schedule(schedule or optim.Constant(), opt, steps)

    # Read the model's identity before the strategy wraps it: FSDP2's fully_shard swaps the
    # module's class (TransformerClassifier -> FSDPTransformerClassifier).
    hparams = _hparams(settings, task, module, strategy)
    if settings.activation_checkpointing:
        # Before any wrapping, on the blocks FSDP shards (its own choice when it has one).
        chosen = settings.activation_checkpointing
        names = getattr(strategy, "shard_modules", None) if chosen is True else chosen
        recomputed = checkpoint_activations(module, names)
    strategy.prepare(module, make_optimizer, make_schedule, settings)
    # Different dropout streams per rank, the same model initialisation on all of them. Seeded
    # after `prepare`, which may draw from the RNG itself (FSDP2's fully_shard does).
    torch.manual_seed(seed * 1_000_003 + strategy.rank + 1)
    # Verified (collectively): a damaged newest checkpoint is set aside for the newest intact one.
    resume_from, damaged = checkpoint.newest_intact(workdir)
    start_step = checkpoint.read_meta(resume_from)["step"] if resume_from else 0
    if resume_from and _inside(workdir, _ROOT.get()):
        _check_same_config(workdir)  # a stage folder another run shares by design is not checked
    logger = RunLogger(workdir, enabled=strategy.is_main, total_steps=steps, start_step=start_step,
                       name=os.path.basename(os.path.normpath(workdir)))
    logger.start(model=hparams["model"], parameters=hparams["parameters"], task=hparams["task"],
                 strategy=strategy.name, world_size=strategy.world_size)
    if settings.activation_checkpointing:
        classes = sorted({type(block).__name__ for block in recomputed})
        logger.info(f"activation checkpointing: {len(recomputed)} block(s) recomputed in backward ({', '.join(classes)})")
    trainer = Trainer(task=task, strategy=strategy, settings=settings, workdir=workdir, logger=logger,
                      callbacks=callbacks, config_hash=config.config_hash(), flops_per_example=flops,
                      on_first_step=lambda: _write_operative_config(workdir, logger, strategy.is_main))
    try:
        if strategy.is_main:
            write_atomically(os.path.join(workdir, "config.gin"), config.config_text())
            logger.text("config/config.gin", gin.markdown(config.config_text()))
        if resume_from:
            trainer.restore(checkpoint.load(strategy, resume_from))
            for note in damaged:
                logger.info(note)
            logger.info(f"resumed from {resume_from} (step {trainer.step})"
                        + (", the newest intact checkpoint" if damaged else ""))
        if trainer.step >= steps:
            # Started again after it finished: nothing to train, nothing new to write.
            logger.info(f"already finished: {workdir} reached step {trainer.step} of {steps} "
                        "(raise train.steps to train on, or pass a new --workdir)")
            metrics = _final_evaluation(workdir, trainer.step, settings.eval_splits)
        else:
            metrics = trainer.fit()
            logger.summary(trainer.step, metrics)
            logger.hparams(hparams,
                           {f"{split}/{k}": v for split, m in metrics.items() for k, v in m.items()})
    finally:
        logger.close()
    return TrainResult(workdir=workdir, step=trainer.step, steps=steps, metrics=metrics, model=strategy.module,
                       checkpoint=checkpoint.latest(workdir),
                       rebuild=_rebuilder(model) if strategy.shards_parameters else None)


def _rebuilder(model: Any) -> Callable[[], torch.nn.Module]:
    """Builds `train.model` again as this stage built it (same gin scope), leaving the RNG alone."""
    scope = list(gin.current_scope())

    def rebuild() -> torch.nn.Module:
        factory = model
        if isinstance(model, torch.nn.Module):  # `@Model()`: gin built it before `train` ran
            # The binding that applies in `scope` (gin's query ignores active scopes).
            for depth in range(len(scope), -1, -1):
                try:
                    factory = gin.query_parameter("/".join([*scope[:depth], "train.model"]))
                    break
                except ValueError:
                    continue
        with gin.config_scope(scope), torch.random.fork_rng(devices=[]):
            if isinstance(factory, gin.config.ConfigurableReference):
                return factory.scoped_configurable_fn()
            return _build(factory, "model")

    return rebuild


def _inside(path: str, root: str | None) -> bool:
    """`path` is `root` or below it (train() called directly, outside main(), counts as inside)."""
    if root is None:
        return True
    path, root = os.path.abspath(path), os.path.abspath(root)
    return path == root or path.startswith(root + os.sep)


def _check_same_config(workdir: str) -> None:
    """Refuse to resume a run under a config other than its own (but for the step budget): the
    restored optimizer and schedule would keep the old settings while config.gin claimed the new."""
    saved_path = os.path.join(workdir, "config.gin")
    if _CONFIG_CHANGE.get() or not os.path.isfile(saved_path):
        return
    with open(saved_path) as handle:
        difference = config.config_difference(handle.read(), config.config_text())
    if difference:
        raise ConfigError(f"{workdir} holds a run with another config ({difference}): pass a new --workdir "
                          "to start a fresh run, or --resume-with-new-config to resume this one with the new config")


def _final_evaluation(workdir: str, step: int, splits: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The final evaluation a finished run logged (scalars, from metrics.jsonl), per split."""
    if not os.path.isfile(os.path.join(workdir, "metrics.jsonl")):
        return {}  # a rank on another node's disk: only rank 0 writes the log
    logged = {r["split"]: r for r in read_metrics(workdir) if r.get("step") == step}
    found = {}
    for split in splits:
        record = logged.get(split if split != "train" else "eval_train")
        if record is not None:
            found[split] = {k: v for k, v in record.items() if k not in ("step", "split")}
    return found


def _write_operative_config(workdir: str, logger: RunLogger, is_main: bool) -> None:
    if is_main:
        text = config.operative_text()
        write_atomically(os.path.join(workdir, "operative_config.gin"), text)
        logger.text("config/operative_config.gin", gin.markdown(text))


def _hparams(settings: Settings, task: Task, module: torch.nn.Module, strategy) -> dict[str, Any]:
    values = {k: v for k, v in dataclasses.asdict(settings).items() if isinstance(v, (int, float, str, bool))}
    values.update(task=type(task).__name__, model=type(module).__name__, strategy=strategy.name,
                  parameters=analysis.count_parameters(module))
    return values


@gin.configurable
def run(*, program: Callable[..., Any] = train) -> Any:
    """The program `launch/run.py` calls; multi-stage methods bind `run.program = @name`."""
    return program()


def main(workdir: str, *, dry_run: bool = False, config_change: bool = False) -> Any:
    """Call the configured program with `workdir` as the default run directory; with `dry_run`
    every `train` call builds and checks its run and returns a report instead of training; with
    `config_change` a run resumes even where its saved config differs from this one."""
    token_w = _WORKDIR.set(workdir)
    token_d = _DRY_RUN.set(dry_run)
    token_c = _CONFIG_CHANGE.set(config_change)
    token_r = _ROOT.set(workdir)
    try:
        with contextlib.ExitStack() as locks:
            if not dry_run:  # a dry run writes nothing
                locks.enter_context(rundir.exclusive(workdir))
            token_l = _LOCKS.set(locks)
            try:
                return run()
            finally:
                _LOCKS.reset(token_l)
    except TypeError as error:
        # gin builds `@Name()` arguments while calling the program: a component bound without a
        # required parameter (or with one it lacks) surfaces here.
        translated = config.translate_call_error(error)
        if translated is None:
            raise
        raise translated from None
    except RuntimeError as error:
        # gin's own check of required parameters (a file meant to be included, run on its own)
        if not str(error).startswith("Required bindings for"):
            raise
        raise config.translate_gin_error(error) from None
    finally:
        _WORKDIR.reset(token_w)
        _DRY_RUN.reset(token_d)
        _CONFIG_CHANGE.reset(token_c)
        _ROOT.reset(token_r)


def _hold(workdir: str) -> None:
    """Take `workdir`'s lock (engine/rundir.py) until the enclosing stage, or else the program,
    ends. `main` holds the program's run directory for the whole program; `train` adds the folder
    it trains in (a stage's, or a shared one such as adaptation's `source_workdir`). The lock is
    re-entrant, so a program never blocks itself. Outside `main` nothing is locked."""
    locks = _LOCKS.get()
    if locks is not None:
        locks.enter_context(rundir.exclusive(workdir))


@contextlib.contextmanager
def stage(name: str):
    """Run a stage of a multi-stage program in gin scope `name` and sub-folder `<workdir>/<name>`."""
    parent = _WORKDIR.get()
    if parent is None:
        raise ConfigError("a multi-stage program needs a workdir")
    token = _WORKDIR.set(os.path.join(parent, name))
    try:
        with gin.config_scope(name), contextlib.ExitStack() as locks:
            token_l = _LOCKS.set(locks)  # what `train` locks in this stage is released with it
            try:
                yield os.path.join(parent, name)
            finally:
                _LOCKS.reset(token_l)
    finally:
        _WORKDIR.reset(token)


def configured_steps(scope: str | None = None) -> int:
    """`train.steps` as gin binds it in `scope` (default: the current scope), macros resolved, for
    code that judges a run from its folder. References are not resolved in general: that would
    build the task or model as a side effect."""
    with gin.config_scope(scope) if scope else contextlib.nullcontext():
        steps = gin.get_bindings("train", resolve_references=False).get("steps")
        if isinstance(steps, gin.config.ConfigurableReference) and steps.configurable.name == "macro":
            steps = steps.scoped_configurable_fn()
    return int(steps)
