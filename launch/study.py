"""The study protocol every reproduction shares (docs/studies.md).

A `Study` declares its arms (gin variants), one `Budget` per budget name (`smoke`, `cpu`, `gpu`: seeds,
the bindings that size every run, the tuning sweep), its claims ("arm A beats arm B" on one metric),
the split that selects (validation) and the split that reports (test). Running it:

1. measures every arm's budget from its parsed configuration and refuses arms that differ in a way
   the study did not declare (a declared difference becomes a column of the table);
2. runs arms x seeds (x sweep candidates) in two phases (the sweeps and untuned arms, then the
   selected candidates on the remaining seeds), in this process, in `--jobs` local processes, or
   as one submitit job array per phase (SLURM, or submitit's local executor); a run whose record
   exists with the same configuration hash is reused, an interrupted one resumes;
3. selects each tuned arm's candidate on the validation split only (every arm in a claim gets the
   same sweep), and reads the test split once, for the selected candidate;
4. writes results/<study>/<budget>.json (every row with its provenance) and a markdown rendering;
   runs from different machines never share a table (`StudyError`).

Nothing here knows a paper: a reproduction module builds `Study` objects and calls `main`.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import itertools
import json
import numbers
import os
import re
import shlex
import sys
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

from engine.config import REPO_ROOT
from launch import provenance, seed_statistics as statistics

RECORD = "study_record.json"
SMOKE = "smoke"
REPORT_EXAMPLES = "report examples"  # the key of a measured budget that sizes the binomial SE
EXECUTORS = ("process", "submitit-local", "slurm")


class StudyError(Exception):
    """A study that would give an untrustworthy table: undeclared budget differences, unequal
    tuning, too few seeds, runs from different machines, a run folder from another configuration."""


class Interrupted(StudyError):
    """A run stopped before its last step (a signal): the same command resumes it."""


@dataclasses.dataclass(frozen=True)
class Arm:
    """One configuration of a study.

    `tune` names the sweep axes (keys of `Budget.sweep`) this arm is tuned over. `declared` lists
    the budget keys in which this arm deliberately differs from the others, each with the reason
    the table prints. Every run is independent: arms that should start from the same model get it
    by training it from the same seed (the CPU engine is deterministic), never by sharing a folder.
    """

    name: str
    label: str
    gin: tuple[str, ...]
    bindings: tuple[str, ...] = ()
    tune: tuple[str, ...] = ()
    declared: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Budget:
    """What every arm gets at one budget name: seeds, the bindings that size each run (steps, batch,
    data), the sweep's candidate values, and how many leading seeds the sweep runs on (None: all).
    `note` says what the budget is for, e.g. the machine and time it was sized for."""

    name: str
    seeds: tuple[int, ...]
    bindings: tuple[str, ...] = ()
    sweep: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    tune_seeds: int | None = None
    note: str = ""

    @property
    def tuning_seeds(self) -> tuple[int, ...]:
        return self.seeds if self.tune_seeds is None else self.seeds[:self.tune_seeds]


@dataclasses.dataclass(frozen=True)
class Claim:
    """'`better` beats `worse`' on the report split, on the study's metric and direction unless the
    claim names its own (`metric`, e.g. 'ponder/out_of_range', with `direction` and the `scale` its
    table prints it at). Arms tuned over different sweeps may be compared only with `tuning_note`
    saying why the difference is fair (e.g. an axis the other arm does not have); the table prints it."""

    name: str
    text: str
    better: str
    worse: str
    metric: str | None = None
    direction: str | None = None
    scale: float | None = None
    tuning_note: str = ""


def default_measure() -> dict[str, Any]:
    """The budget of a plain `train` run: steps and global batch (read under a parsed config)."""
    from engine.program import configured_steps
    import gin
    return {"steps": configured_steps(), "batch": gin.query_parameter("train.batch_size")}


def final_metrics(result: Any) -> dict[str, Any]:
    """The last evaluation of a run: a TrainResult, or a multi-stage program's result whose `final`
    is its last stage's TrainResult. {'metrics': {'split/name': value}, 'finished', 'extra'}."""
    final = getattr(result, "final", result)
    metrics = {f"{split}/{name}": float(value) for split, values in final.metrics.items()
               for name, value in values.items() if isinstance(value, numbers.Real)}
    return {"metrics": metrics, "finished": bool(final.finished), "extra": {}}


@dataclasses.dataclass(frozen=True)
class Study:
    """Arms, budgets and claims of one comparison. `files` follow each arm's own gin files;
    `bindings` come first, then the arm's, the budget's, the sweep candidate's and the seed's, so
    later ones win. `measure` is
    called under each run's parsed configuration and returns its budget as {key: value}; with a
    `REPORT_EXAMPLES` entry and `proportion=True` the table states the binomial SE of the report
    split against a third of each claim's effect. `extract` turns a program's return value into
    the run's metrics (see `final_metrics`), under the run's parsed configuration; it must be a
    module-level function (it is pickled). `columns` adds report-split metrics to the arms table."""

    name: str
    title: str
    arms: tuple[Arm, ...]
    budgets: Mapping[str, Budget]
    claims: tuple[Claim, ...]
    metric: str
    select_split: str
    report_split: str
    direction: str = "higher"
    files: tuple[str, ...] = ()
    bindings: tuple[str, ...] = ()
    measure: Callable[[], dict[str, Any]] = default_measure
    extract: Callable[[Any], dict[str, Any]] = final_metrics
    proportion: bool = False
    scale: float = 1.0
    unit: str = ""
    notes: tuple[str, ...] = ()
    columns: tuple[tuple[str, str, float], ...] = ()  # (label, report-split metric, scale): extra arm columns
    # The metric that selects on `select_split` when it is not `metric` (e.g. the report metric needs
    # labels the selection must not read: base-to-new selects on base-class accuracy alone).
    select_metric: str | None = None
    # Bindings formatted with each run's seed (and `{arm}`, its arm's name), after `train.seed = {seed}`
    # (e.g. a task's own data seed, or the pre-trained run this arm and seed start from), so that the
    # seed varies them too and arms stay paired.
    seed_bindings: tuple[str, ...] = ()
    # A generative study scores `draws` independent sample sets per run: `extract` puts each metric's
    # mean over them in `metrics` and every draw's value in extra["draws"] ({"split/name": [...]}).
    # With fewer than MIN_SEEDS seeds, arm summaries and claims run over (seed, draw) units, so
    # seeds x draws >= MIN_SEEDS can judge a claim (the units of one seed share its trained model,
    # which the study's notes must say); from MIN_SEEDS seeds on, the unit is the seed again, with
    # the mean of its draws (see `units`).
    draws: int = 1

    def __post_init__(self) -> None:
        self.validate()

    @property
    def select_key(self) -> str:
        return f"{self.select_split}/{self.select_metric or self.metric}"

    @property
    def report_key(self) -> str:
        return f"{self.report_split}/{self.metric}"

    def only(self, names: Iterable[str]) -> "Study":
        """This study with only the named arms, and only the claims between them (part of a study:
        its runs and records are the whole study's, so running the rest later reuses them)."""
        names = set(names)
        unknown = sorted(names - {a.name for a in self.arms})
        if unknown:
            raise StudyError(f"study {self.name!r} has no arm(s) {unknown}; it has {[a.name for a in self.arms]}")
        return dataclasses.replace(self, arms=tuple(a for a in self.arms if a.name in names),
                                   claims=tuple(c for c in self.claims if {c.better, c.worse} <= names))

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise StudyError(f"study {self.name!r} has no arm {name!r}; it has {[a.name for a in self.arms]}")

    def validate(self) -> None:
        """The declaration-time rules: known names, equal tuning for the arms a claim compares,
        enough seeds to judge a claim at every budget but smoke."""
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise StudyError(f"study {self.name!r} repeats an arm name: {names}")
        if self.direction not in statistics.DIRECTIONS:
            raise StudyError(f"study {self.name!r}: direction must be one of {statistics.DIRECTIONS}")
        if self.select_split == self.report_split:
            raise StudyError(f"study {self.name!r} selects and reports on the same split {self.report_split!r}")
        for claim in self.claims:
            better, worse = self.arm(claim.better), self.arm(claim.worse)
            if claim.direction is not None and claim.direction not in statistics.DIRECTIONS:
                raise StudyError(f"claim {claim.name!r}: direction must be one of {statistics.DIRECTIONS}")
            if set(better.tune) != set(worse.tune) and not claim.tuning_note:
                raise StudyError(f"claim {claim.name!r} compares {better.name!r} tuned over {sorted(better.tune)} "
                                 f"with {worse.name!r} tuned over {sorted(worse.tune)}: a baseline gets the same sweep "
                                 "(or the claim's tuning_note says why the difference is fair)")
        for key, budget in self.budgets.items():
            if key != budget.name:
                raise StudyError(f"study {self.name!r} files budget {budget.name!r} under {key!r}")
            units = len(budget.seeds) * self.draws
            if budget.name != SMOKE and self.claims and units < statistics.MIN_SEEDS:
                raise StudyError(f"study {self.name!r}, budget {budget.name!r}: {len(budget.seeds)} seeds x "
                                 f"{self.draws} draw(s) cannot judge a claim; use >= {statistics.MIN_SEEDS} units")
            if len(set(budget.seeds)) != len(budget.seeds) or not budget.seeds:
                raise StudyError(f"budget {budget.name!r} needs distinct seeds, got {budget.seeds}")
            for arm in self.arms:
                missing = [axis for axis in arm.tune if not budget.sweep.get(axis)]
                if missing:
                    raise StudyError(f"arm {arm.name!r} is tuned over {missing}, which budget {budget.name!r} "
                                     "gives no values")

    def units(self, seeds: int) -> str:
        """What one unit of a mean, interval and claim is with `seeds` seeds: 'seed', or 'seed x draw'
        for a study that scores several draws per run and has too few seeds to judge a claim alone.
        Draws of one seed share its trained model, so they stand in for seeds only while there are
        too few: with enough seeds, the seed-to-seed spread is the one a claim must survive."""
        return "seed" if self.draws == 1 or seeds >= statistics.MIN_SEEDS else "seed x draw"

    def unit_values(self, runs: Iterable[Mapping[str, Any]], key: str) -> dict[Any, float]:
        """{unit: value of metric `key`} over runs (records or result rows): per seed its run's
        metric (for several draws, their mean), or per (seed, draw) pair (see `units`)."""
        runs = list(runs)
        if self.units(len({r["seed"] for r in runs})) == "seed":
            return {r["seed"]: r["metrics"][key] for r in runs}
        return {(r["seed"], d): v for r in runs for d, v in enumerate(r["extra"]["draws"][key])}

    def candidates(self, arm: Arm, budget: Budget) -> list[dict[str, str]]:
        """Every point of the arm's sweep at this budget ({axis: value as gin text}); [{}] untuned."""
        axes = list(arm.tune)
        return [dict(zip(axes, values)) for values in itertools.product(*(budget.sweep[a] for a in axes))]


def candidate_name(candidate: Mapping[str, str]) -> str:
    """'lr=0.001,...' for a folder and a table cell; 'default' for an untuned arm."""
    if not candidate:
        return "default"
    text = ",".join(f"{axis.split('.')[-1]}={value}" for axis, value in candidate.items())
    return re.sub(r"[^\w.,=+-]+", "", text)


# --- the runs --------------------------------------------------------------------------------

def run_dir(root: str, study: Study, budget: Budget, arm: str, candidate: Mapping[str, str], seed: int) -> str:
    return os.path.join(root, study.name, budget.name, arm, candidate_name(candidate), f"seed_{seed}")


def _configuration(study: Study, budget: Budget, arm: Arm, candidate: Mapping[str, str],
                   seed: int) -> tuple[list[str], list[str]]:
    """The gin files and bindings of one run, in the order that makes later ones win."""
    bindings = [*study.bindings, *arm.bindings, *budget.bindings,
                *(f"{axis} = {value}" for axis, value in candidate.items()), f"train.seed = {seed}",
                *(binding.format(seed=seed, arm=arm.name) for binding in study.seed_bindings)]
    return [*arm.gin, *study.files], bindings


def config_hash(files: Sequence[str], bindings: Sequence[str]) -> str:
    from engine import config
    from launch.experiment import parsed_config
    with parsed_config(files, bindings):
        return config.config_hash()


def run_command(files: Sequence[str], bindings: Sequence[str], workdir: str) -> str:
    """The launch/run.py command that trains this one run (paths relative to the repository)."""
    args = ["python", "launch/run.py"]
    for path in files:
        args += ["--gin", path]
    for binding in bindings:
        args += ["--bind", binding]
    return shlex.join(args + ["--workdir", shown(workdir)])


def shown(path: str) -> str:
    """A path relative to the repository when it lies inside it (as results are committed), else absolute."""
    path = os.path.abspath(path)
    return os.path.relpath(path, REPO_ROOT) if os.path.commonpath([path, REPO_ROOT]) == REPO_ROOT else path


def read_record(spec: Mapping[str, Any]) -> dict | None:
    """The run's record when it exists and was made by this configuration; None when absent.
    A record of another configuration in the same folder is an error, never silently reused."""
    path = os.path.join(spec["workdir"], RECORD)
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        record = json.load(handle)
    if record["provenance"]["config_hash"] != spec["config_hash"]:
        raise StudyError(f"{spec['workdir']} holds a run of another configuration (hash "
                         f"{record['provenance']['config_hash']}, expected {spec['config_hash']}): move or delete "
                         "that folder, or pass another --workdir")
    return record


def execute(spec: Mapping[str, Any]) -> dict:
    """Train one run (or resume it) and write its record with provenance; reuse a valid record.
    Runs in a fresh process under --jobs and submitit, so everything it needs is in `spec`."""
    record = read_record(spec)
    if record is not None:
        return record
    import torch

    from engine import config, program
    from engine.files import write_atomically
    from launch.experiment import parsed_config
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    workdir = spec["workdir"]
    resumed = os.path.isdir(workdir) and any("metrics.jsonl" in files for _, _, files in os.walk(workdir))
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "log.txt"), "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        began = time.time()
        with parsed_config(spec["files"], spec["bindings"]):
            hashed = config.config_hash()
            result = program.main(workdir)
            wall = time.time() - began
            extracted = spec["extract"](result)  # under the run's configuration: it may build the task
    if hashed != spec["config_hash"]:
        raise StudyError(f"{workdir}: the configuration parsed in the worker (hash {hashed}) is not the one "
                         f"planned ({spec['config_hash']}); is the checkout the same on every machine?")
    if not extracted["finished"]:
        raise Interrupted(f"{workdir} stopped before its last step; run the same command again to resume it")
    record = {key: spec[key] for key in ("study", "budget", "arm", "candidate", "seed")}
    record.update(metrics=extracted["metrics"], extra=extracted.get("extra", {}),
                  provenance=provenance.collect(command=spec["command"], run_command=spec["run_command"],
                                                config_hash=hashed, wall_s=wall, resumed=resumed))
    write_atomically(os.path.join(workdir, RECORD), json.dumps(record, indent=1))
    return record


@contextlib.contextmanager
def _sigterm_raises():
    """SIGTERM to the driver raises KeyboardInterrupt, as Ctrl-C does, so that it stops its workers
    before it exits (a run's own failures are Exceptions, reported after the phase; this is not)."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt("SIGTERM")
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(workers: Sequence[Any], grace_s: float = 60.0) -> None:
    """SIGTERM every worker (its run saves a checkpoint and stops), then SIGKILL those still alive
    after `grace_s`: a worker may already hold the next queued run, which must not train on."""
    for process in workers:
        process.terminate()
    deadline = time.time() + grace_s
    for process in workers:
        process.join(max(0.0, deadline - time.time()))
    for process in workers:
        if process.is_alive():
            process.kill()


class SubmititTask:
    """One array task: a few runs in turn. On preemption or timeout submitit calls `checkpoint`,
    which requeues the same task; its finished runs are found by their records and the one in
    progress resumes from its last checkpoint."""

    def __init__(self, specs: Sequence[Mapping[str, Any]]) -> None:
        self.specs = list(specs)

    def __call__(self) -> list[dict]:
        return [execute(spec) for spec in self.specs]

    def checkpoint(self, *args: Any, **kwargs: Any):
        import submitit
        return submitit.helpers.DelayedSubmission(SubmititTask(self.specs))


@dataclasses.dataclass
class Runner:
    """Where a phase's runs go: `process` (this process with jobs = 1, else `jobs` fresh local
    processes), or `submitit-local` / `slurm` (one job array per phase, `tasks_per_job` runs per
    array task; the driver waits for the array and collects the records)."""

    executor: str = "process"
    jobs: int = 1
    threads: int | None = None
    folder: str = os.path.join(REPO_ROOT, "runs", "studies", "submitit")
    tasks_per_job: int = 1
    slurm: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    log: Callable[[str], None] = print
    stop_grace_s: float = 60.0  # on SIGTERM / Ctrl-C: how long workers get to checkpoint before SIGKILL

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise StudyError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")

    def threads_per_run(self) -> int | None:
        if self.threads:
            return self.threads
        if self.executor == "process" and self.jobs > 1:
            return max(1, (os.cpu_count() or 1) // self.jobs)
        return None

    def __call__(self, specs: Sequence[dict]) -> None:
        pending = [s for s in specs if read_record(s) is None]
        if not pending:
            return
        threads = self.threads_per_run()
        for spec in pending:
            spec["threads"] = threads
        self.log(f"  {len(pending)} run(s) to train ({len(specs) - len(pending)} reused), "
                 f"executor {self.executor}" + (f", {self.jobs} at once" if self.executor == "process" else ""))
        failures: list[str] = []
        if self.executor == "process" and self.jobs <= 1:
            for spec in pending:
                failures += self._attempt(lambda: execute(spec), spec)
        elif self.executor == "process":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(min(self.jobs, len(pending)), mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [(pool.submit(execute, spec), spec) for spec in pending]
                try:
                    with _sigterm_raises():
                        for future, spec in futures:
                            failures += self._attempt(future.result, spec)
                except KeyboardInterrupt:
                    # Stop the workers too: no queued run starts, and each running one gets SIGTERM,
                    # checkpoints and stops, so the same command resumes it (orphaned workers would
                    # otherwise train on through the queue).
                    workers = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
                    pool.shutdown(wait=False, cancel_futures=True)
                    _stop(workers, self.stop_grace_s)
                    raise
        else:
            failures += self._submitit(pending)
        if failures:
            raise StudyError(f"{len(failures)} run(s) failed:\n" + "\n".join(failures))

    def _attempt(self, call: Callable[[], dict], spec: Mapping[str, Any]) -> list[str]:
        try:
            record = call()
        except Interrupted:
            if self.executor == "process" and self.jobs <= 1:
                raise  # Ctrl-C or SIGTERM in this process: stop here, not at the next run
            return [f"{spec['workdir']}: stopped before its last step (run the same command again to resume)"]
        except Exception as error:  # reported together after the phase, so one failure does not hide others
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            return [f"{spec['workdir']}: {type(error).__name__}: {first} (log: {spec['workdir']}/log.txt)"]
        # Only the selection metric: the report split is looked at once, in the table.
        selected = record["metrics"].get(spec["select_key"], float("nan"))
        self.log(f"  {spec['arm']:>14s} {candidate_name(spec['candidate']):>14s} seed {spec['seed']}: "
                 f"{spec['select_key']} {selected:.4f} ({record['provenance']['wall_s']:.0f} s)")
        return []

    def _submitit(self, pending: Sequence[dict]) -> list[str]:
        import submitit
        cluster = "local" if self.executor == "submitit-local" else "slurm"
        executor = submitit.AutoExecutor(folder=self.folder, cluster=cluster)
        executor.update_parameters(**dict(self.slurm))
        chunks = [pending[i:i + self.tasks_per_job] for i in range(0, len(pending), max(1, self.tasks_per_job))]
        with executor.batch():
            jobs = [executor.submit(SubmititTask(chunk)) for chunk in chunks]
        self.log(f"  submitted job array {jobs[0].job_id.split('_')[0] if jobs else '-'} ({len(jobs)} task(s)); "
                 f"logs in {self.folder}")
        failures = []
        for job, chunk in zip(jobs, chunks):
            try:
                job.results()
            except Exception as error:
                first = (str(error).strip().splitlines() or [type(error).__name__])[-1]
                failures += [f"{spec['workdir']}: array task {job.job_id} failed: {first}" for spec in chunk
                             if not os.path.exists(os.path.join(spec["workdir"], RECORD))]
        return failures




# --- planning, selection, analysis ------------------------------------------------------------

class Plan:
    """One study at one budget: its runs, phase by phase, and the records they produced."""

    def __init__(self, study: Study, budget_name: str, root: str, command: str) -> None:
        if budget_name not in study.budgets:
            raise StudyError(f"study {study.name!r} has no budget {budget_name!r}; it has {sorted(study.budgets)}")
        self.study, self.budget, self.root, self.command = study, study.budgets[budget_name], root, command
        self.selected: dict[str, dict[str, str]] = {}
        self.selection: dict[str, list[dict]] = {}
        self.measured = self.measure()

    def spec(self, arm: Arm, candidate: Mapping[str, str], seed: int) -> dict:
        files, bindings = _configuration(self.study, self.budget, arm, candidate, seed)
        workdir = run_dir(self.root, self.study, self.budget, arm.name, candidate, seed)
        return {"study": self.study.name, "budget": self.budget.name, "arm": arm.name, "candidate": dict(candidate),
                "seed": seed, "files": files, "bindings": bindings, "workdir": workdir,
                "config_hash": config_hash(files, bindings), "command": self.command,
                "run_command": run_command(files, bindings, workdir), "extract": self.study.extract,
                "select_key": self.study.select_key}

    def measure(self) -> dict[str, dict[str, Any]]:
        """Every arm's (and sweep candidate's) budget; StudyError on an undeclared difference."""
        from launch.experiment import parsed_config
        measured: dict[str, dict[str, Any]] = {}
        for arm in self.study.arms:
            for candidate in self.study.candidates(arm, self.budget):
                files, bindings = _configuration(self.study, self.budget, arm, candidate, self.budget.seeds[0])
                with parsed_config(files, bindings):
                    value = dict(self.study.measure())
                if arm.name in measured and measured[arm.name] != value:
                    raise StudyError(f"arm {arm.name!r}: sweep candidate {candidate_name(candidate)} changes the "
                                     f"budget ({measured[arm.name]} -> {value}); a sweep must not change the budget")
                measured[arm.name] = value
        problems = []
        for key in sorted({k for value in measured.values() for k in value}):
            undeclared = {a.name: measured[a.name].get(key) for a in self.study.arms if key not in a.declared}
            if len({json.dumps(v, sort_keys=True, default=str) for v in undeclared.values()}) > 1:
                problems.append(f"  {key}: " + ", ".join(f"{arm} {value}" for arm, value in undeclared.items()))
        if problems:
            raise StudyError(f"study {self.study.name!r}, budget {self.budget.name!r}: arms differ in budget without "
                             "declaring it (Arm.declared):\n" + "\n".join(problems))
        return measured

    def first_phase(self) -> list[dict]:
        """Untuned arms on every seed, tuned arms' every candidate on the tuning seeds."""
        specs = []
        for arm in self.study.arms:
            candidates = self.study.candidates(arm, self.budget)
            seeds = self.budget.seeds if len(candidates) == 1 else self.budget.tuning_seeds
            specs += [self.spec(arm, c, s) for c in candidates for s in seeds]
        return specs

    def select(self) -> None:
        """Each arm's candidate with the best mean of the selection metric over the tuning seeds
        (the report split is not looked at); ties keep the earlier candidate."""
        key, sign = self.study.select_key, (1 if self.study.direction == "higher" else -1)
        for arm in self.study.arms:
            candidates = self.study.candidates(arm, self.budget)
            if len(candidates) == 1:
                self.selected[arm.name] = candidates[0]
                continue
            scores = []
            for candidate in candidates:
                values = [self.record(arm, candidate, s)["metrics"][key] for s in self.budget.tuning_seeds]
                scores.append({"candidate": candidate, "name": candidate_name(candidate),
                               "seeds": list(self.budget.tuning_seeds), key: values,
                               "mean": sum(values) / len(values)})
            best = max(range(len(scores)), key=lambda i: (sign * scores[i]["mean"], -i))
            self.selected[arm.name] = candidates[best]
            self.selection[arm.name] = scores

    def second_phase(self) -> list[dict]:
        """The selected candidate of each tuned arm on the seeds the sweep did not run."""
        specs = []
        for arm in self.study.arms:
            if len(self.study.candidates(arm, self.budget)) > 1:
                rest = [s for s in self.budget.seeds if s not in self.budget.tuning_seeds]
                specs += [self.spec(arm, self.selected[arm.name], s) for s in rest]
        return specs

    def record(self, arm: Arm, candidate: Mapping[str, str], seed: int) -> dict:
        record = read_record(self.spec(arm, candidate, seed))
        if record is None:
            raise StudyError(f"no record for {arm.name} {candidate_name(candidate)} seed {seed}")
        return record

    def results(self) -> dict[str, Any]:
        """The machine-readable results: rows with provenance, summaries, claims with verdicts."""
        study, budget = self.study, self.budget
        rows = {arm.name: [self.record(arm, self.selected[arm.name], s) for s in budget.seeds] for arm in study.arms}
        every = [r for records in rows.values() for r in records]
        # The sweep's other candidates chose the selected ones, so they must come from the same machine too.
        tuning = [self.record(arm, candidate, s) for arm in study.arms for candidate in study.candidates(arm, budget)
                  if candidate != self.selected[arm.name] for s in budget.tuning_seeds]
        machines = {provenance.machine(r["provenance"]) for r in every + tuning}
        if len(machines) > 1:
            where = {m: sorted({f"{r['arm']}/{candidate_name(r['candidate'])}/seed_{r['seed']}" for r in every + tuning
                                if provenance.machine(r["provenance"]) == m})[:4] for m in machines}
            raise StudyError(f"study {study.name!r}, budget {budget.name!r}: runs from different machines cannot share "
                             f"a table: {where}; rerun them on one machine (another --workdir)")
        arms = []
        for arm in study.arms:
            records = rows[arm.name]
            reported = list(study.unit_values(records, study.report_key).values())
            arms.append({
                "name": arm.name, "label": arm.label, "gin": list(arm.gin), "bindings": list(arm.bindings),
                "tuned": list(arm.tune), "selected": self.selected[arm.name],
                "selection": self.selection.get(arm.name, []),
                "declared": dict(arm.declared), "budget": self.measured[arm.name],
                "summary": statistics.summarize(reported).as_dict(),
                "select_summary": statistics.summarize([r["metrics"][study.select_key] for r in records]).as_dict(),
                "columns": {label: {"scale": scale, **statistics.summarize(
                    list(study.unit_values(records, f"{study.report_split}/{metric}").values())).as_dict()}
                    for label, metric, scale in study.columns  # an arm without the metric leaves it empty
                    if all(f"{study.report_split}/{metric}" in r["metrics"] for r in records)},
                "runs": [{"seed": r["seed"], "report": r["metrics"][study.report_key],
                          "select": r["metrics"][study.select_key], "metrics": r["metrics"], "extra": r["extra"],
                          "workdir": shown(run_dir(self.root, study, budget, arm.name, self.selected[arm.name],
                                                   r["seed"])),
                          "provenance": r["provenance"]} for r in records]})
        by_name = {a["name"]: a for a in arms}
        claims = []
        for claim in study.claims:
            key = f"{study.report_split}/{claim.metric}" if claim.metric else study.report_key
            direction = claim.direction or study.direction
            better = study.unit_values(by_name[claim.better]["runs"], key)
            worse = study.unit_values(by_name[claim.worse]["runs"], key)
            comparison = statistics.paired(better, worse, direction)
            entry = {"name": claim.name, "text": claim.text, "better": claim.better, "worse": claim.worse,
                     "metric": claim.metric or study.metric, "direction": direction,
                     "scale": claim.scale if claim.scale is not None else study.scale,
                     "tuning_note": claim.tuning_note, **comparison.as_dict()}
            examples = self.measured[claim.better].get(REPORT_EXAMPLES)
            if study.proportion and examples and not claim.metric:
                accuracy = (by_name[claim.better]["summary"]["mean"] + by_name[claim.worse]["summary"]["mean"]) / 2
                entry["resolution"] = statistics.resolution(accuracy, int(examples), comparison.difference.mean)
            claims.append(entry)
        return {
            "study": study.name, "title": study.title, "notes": list(study.notes),
            "budget": {"name": budget.name, "seeds": list(budget.seeds), "tuning_seeds": list(budget.tuning_seeds),
                       "bindings": list(budget.bindings), "sweep": {k: list(v) for k, v in budget.sweep.items()},
                       "note": budget.note},
            "metric": study.metric, "select_metric": study.select_metric or study.metric,
            "direction": study.direction, "select_split": study.select_split,
            "report_split": study.report_split, "proportion": study.proportion, "scale": study.scale,
            "unit": study.unit, "draws": study.draws, "units": study.units(len(budget.seeds)),
            "files": list(study.files), "bindings": list(study.bindings),
            "machine": machines.pop(), "provenance": {**summary_provenance(every),
                                                      "tuning_runs": len(tuning),
                                                      "tuning_wall_s": round(sum(r["provenance"]["wall_s"]
                                                                                 for r in tuning), 1)},
            "arms": arms, "claims": claims}


def summary_provenance(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """What the rows share (or every distinct value where they do not), for a table's header."""
    records = list(records)
    values = lambda key: sorted({json.dumps(r["provenance"][key], sort_keys=True) for r in records})
    return {"commits": sorted({r["provenance"]["commit"] or "unknown" for r in records}),
            "dirty": any(r["provenance"]["dirty"] for r in records),
            "versions": [json.loads(v) for v in values("versions")],
            "threads": sorted({r["provenance"]["threads"] for r in records}),
            "commands": sorted({r["provenance"]["command"] for r in records}),
            "runs": len(records), "wall_s": round(sum(r["provenance"]["wall_s"] for r in records), 1)}


def run_studies(studies: Sequence[Study], budget: str, *, root: str, out: str, runner: Runner,
                command: str, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Plan every study (all budgets measured and checked before anything trains), run both phases
    (the runs of all studies together, so parallel jobs stay busy), select, and write
    out/<study>/<budget>.json and .md. Returns the results."""
    from launch import tables
    plans = [Plan(study, budget, root, command) for study in studies]
    log("phase 1: the sweeps (tuning seeds) and the untuned arms (every seed)")
    runner([spec for plan in plans for spec in plan.first_phase()])
    for plan in plans:
        plan.select()
    log("phase 2: each tuned arm's selected configuration on the remaining seeds")
    runner([spec for plan in plans for spec in plan.second_phase()])
    written = []
    for plan in plans:
        results = plan.results()
        write_results(results, out)
        log(f"wrote {os.path.join(out, plan.study.name, budget)}.json and .md")
        log(tables.render([results], "claims"))
        written.append(results)
    return written


def write_results(results: Mapping[str, Any], out: str) -> str:
    from engine.files import write_atomically
    from launch import tables
    base = os.path.join(out, results["study"], results["budget"]["name"])
    os.makedirs(os.path.dirname(base), exist_ok=True)
    write_atomically(base + ".json", json.dumps(results, indent=1, sort_keys=False) + "\n")
    write_atomically(base + ".md", tables.render([results], "full"))
    return base + ".json"


def write_analysis(path: str, name: str, command: str, results: Sequence[Mapping[str, Any]],
                   tables: Mapping[str, Mapping[str, Any]], figures: Mapping[str, Any], summary: str,
                   load_start: Sequence[float]) -> str:
    """Write the fits and rankings derived from study results as a record launch/tables.py renders
    (the benchmark record's layout, launch/benchmarks/_record.py), so README and docs show them
    generated. Its provenance is the studies': their machine, commits, threads and run time; the
    load average is the machine's when the command started (`load_start`) and when it wrote this."""
    from engine.files import write_atomically
    from launch.benchmarks._record import SCHEMA, load_average
    summary.format(**figures)  # a template naming a missing figure fails here, not in a page
    first = results[0]
    prov = first["provenance"]
    machine_type, _, machine_name = first["machine"].partition(": ")
    record = {"schema": SCHEMA, "benchmark": name, "description": f"derived from {', '.join(r['study'] for r in results)}",
              "settings": {"studies": [r["study"] for r in results], "budget": first["budget"]["name"]},
              "figures": dict(figures), "tables": dict(tables), "summary": summary,
              "provenance": {"command": command, "commit": prov["commits"][0] if prov["commits"] else None,
                             "dirty": any(r["provenance"]["dirty"] for r in results),
                             "versions": prov["versions"][0], "device": {"type": machine_type or "cpu",
                                                                       "name": machine_name or first["machine"]},
                             "threads": prov["threads"][0],
                             "wall_s": round(sum(r["provenance"]["wall_s"] + r["provenance"]["tuning_wall_s"]
                                                 for r in results), 1),
                             "platform": sys.platform},
              "load": {"start": list(load_start), "end": load_average(), "cpus": os.cpu_count()},
              "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomically(path, json.dumps(record, indent=1) + "\n")
    return path



def plan_text(studies: Sequence[Study], budget: str, root: str) -> str:
    """What `--print-plan` prints: per study its run count at `budget` and each arm's measured budget.
    The budget checks run (an undeclared difference raises StudyError); nothing trains."""
    lines = []
    for study in studies:
        plan = Plan(study, budget, root, "plan")
        # The second phase runs each tuned arm's selected candidate on the seeds the sweep skipped.
        later = sum(len(plan.budget.seeds) - len(plan.budget.tuning_seeds) for arm in study.arms
                    if len(study.candidates(arm, plan.budget)) > 1)
        lines.append(f"{study.name} [{budget}]: {len(plan.first_phase()) + later} runs, "
                     f"{len(plan.budget.seeds)} seeds, files {list(study.files)}")
        lines += [f"  {arm.name:>15s}: " + ", ".join(f"{key} {value}" for key, value in plan.measured[arm.name].items())
                  for arm in study.arms]
    return "\n".join(lines)


# --- the command line every protocol reproduction shares ---------------------------------------

def add_arguments(parser: argparse.ArgumentParser, plan: bool = False) -> None:
    """The protocol's options; `plan` adds `--print-plan` (see `printed_plan`) for a reproduction
    whose studies are all known before anything runs."""
    parser.add_argument("--budget", default="cpu", help="smoke (seconds), cpu (the committed results) or gpu")
    parser.add_argument("--jobs", type=int, default=1, help="local processes at once (executor 'process')")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per run (default: cores / jobs under --jobs, else torch's default)")
    parser.add_argument("--executor", default="process", choices=EXECUTORS)
    parser.add_argument("--tasks-per-job", type=int, default=1, help="runs per submitit array task")
    parser.add_argument("--slurm-partition", default=None)
    parser.add_argument("--slurm-timeout-min", type=int, default=60)
    parser.add_argument("--slurm-gpus", type=int, default=0, help="GPUs per array task")
    parser.add_argument("--slurm-cpus", type=int, default=2, help="CPUs per array task")
    parser.add_argument("--slurm-parallelism", type=int, default=64, help="array tasks running at once")
    parser.add_argument("--workdir", default=os.path.join(REPO_ROOT, "runs", "studies"),
                        help="where the runs live (one folder per study/budget/arm/candidate/seed)")
    parser.add_argument("--out", default=os.path.join(REPO_ROOT, "results"), help="results/<study>/<budget>.json")
    if plan:
        parser.add_argument("--print-plan", action="store_true",
                            help="check every arm's budget and print the runs; train nothing")


def printed_plan(studies: Sequence[Study], args: argparse.Namespace) -> bool:
    """Under `--print-plan`, print `plan_text` for `studies` and return True (the caller stops)."""
    if not getattr(args, "print_plan", False):
        return False
    print(plan_text(studies, args.budget, os.path.abspath(args.workdir)))
    return True


def runner_from(args: argparse.Namespace) -> Runner:
    slurm: dict[str, Any] = {"timeout_min": args.slurm_timeout_min, "cpus_per_task": args.slurm_cpus}
    if args.executor == "slurm":
        slurm.update(gpus_per_node=args.slurm_gpus, slurm_array_parallelism=args.slurm_parallelism)
        if args.slurm_partition:
            slurm["slurm_partition"] = args.slurm_partition
    return Runner(executor=args.executor, jobs=args.jobs, threads=args.threads, tasks_per_job=args.tasks_per_job,
                  folder=os.path.join(args.workdir, "submitit"), slurm=slurm)


def main(studies: Sequence[Study], args: argparse.Namespace, command: str) -> int:
    """Run `studies` at `args.budget`; exit code 1 (with the reason) on a StudyError, 2 on a
    configuration error, 0 when done."""
    from engine import config
    from engine.errors import ConfigError
    try:
        run_studies(studies, args.budget, root=os.path.abspath(args.workdir), out=os.path.abspath(args.out),
                    runner=runner_from(args), command=command)
    except StudyError as error:
        print(f"study: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("study: stopped; every finished run is kept and the same command resumes the rest", file=sys.stderr)
        return 130
    except ConfigError as error:
        print(f"config error: {config.format_error(error)}", file=sys.stderr)
        return 2
    return 0
