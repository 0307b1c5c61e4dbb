"""One torchrun job of the composition matrix: every cell of one strategy in one process group.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/composition/job.py \\
        --out DIR --strategy fsdp --cell TransformerClassifier:fp32 --cell T5:bf16 ...

Each cell is a gin configuration (a model family's recipe, or a program's) run by
`engine.program.main` exactly as `launch/run.py` runs it; the process group is started once, with
a short timeout, so a cell whose ranks fall out of step fails in a minute instead of hanging the
job, and the ranks meet at a barrier before the next cell. Every rank writes what each cell did to
DIR/rank<r>.json as it goes. A cell `MODEL:PRECISION:uneven` makes ACT halt after one step on
rank 1 only, so the ranks of a recurrent model run different numbers of steps.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from engine import config, distributed, program  # noqa: E402

COLLECTIVE_TIMEOUT_S = 90.0


@contextlib.contextmanager
def halting_at_once_on_rank_one():
    """ACT halts every position after its first step on rank 1 (p = 0.99 >= 1 - epsilon), while
    rank 0 keeps its learned halting: the ranks' recurrent loops run different numbers of steps."""
    from models.layers.act import AdaptiveComputationTime
    learned = AdaptiveComputationTime.halting_probability

    def uneven(self, state, mask):
        p = learned(self, state, mask)
        return p if distributed.rank() == 0 else p * 0.0 + 0.99

    AdaptiveComputationTime.halting_probability = uneven
    try:
        yield
    finally:
        AdaptiveComputationTime.halting_probability = learned


def run_cell(cell: str, workdir: str, strategy: str) -> dict:
    from tests.composition.recipes import configuration
    files, bindings = configuration(cell, strategy)
    config.reset()
    config.parse(files, bindings)
    with halting_at_once_on_rank_one() if cell.endswith(":uneven") else contextlib.nullcontext():
        result = program.main(workdir)
    final = getattr(result, "final", result)  # a multi-stage program returns its last stage's result
    return {"ok": True, "step": getattr(final, "step", None), "model": type(getattr(final, "model", None)).__name__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--strategy", required=True)
    parser.add_argument("--cell", action="append", default=[])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config.import_packages()
    distributed.init_process_group(timeout_s=COLLECTIVE_TIMEOUT_S)
    rank = distributed.rank()
    results: dict[str, dict] = {}
    path = os.path.join(args.out, f"rank{rank}.json")
    os.makedirs(args.out, exist_ok=True)
    broken = None  # a cell after which the ranks can no longer talk: the rest are not run
    for cell in args.cell:
        if broken is not None:
            results[cell] = {"ok": False, "error": f"not run: cell {broken} broke the process group"}
        else:
            started = time.perf_counter()
            try:
                results[cell] = run_cell(cell, os.path.join(args.out, cell.replace(":", "-")), args.strategy)
                results[cell]["seconds"] = round(time.perf_counter() - started, 2)
            except BaseException as error:  # noqa: BLE001 - every failure is a result of the cell
                results[cell] = {"ok": False, "error": f"{type(error).__name__}: {config.format_error(error)}",
                                 "trace": traceback.format_exc()[-3000:]}
            try:
                dist.barrier()
            except BaseException as error:  # noqa: BLE001
                results[cell] = {"ok": False, "error": f"{results[cell].get('error', '')} (then the barrier after the "
                                                       f"cell failed: {error})", "trace": results[cell].get("trace")}
                broken = cell
        with open(path, "w") as handle:
            json.dump(results, handle, indent=1)
    if broken is None:
        distributed.shutdown(finished=True)
    sys.stdout.flush()
    os._exit(0)  # as launch/run.py's exit_rank: no interpreter teardown of gloo objects


if __name__ == "__main__":
    main()
