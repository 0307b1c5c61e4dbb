"""The command line: parse gin files and bindings, register components, call the program.

    python launch/run.py --gin gin/hyperut_pvr.gin [--gin more.gin] [--bind 'train.steps = 200']
                         [--workdir runs/x] [--resume-with-new-config] [--print-config] [--list]
"""
from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a gin-configured experiment.")
    parser.add_argument("--gin", action="append", default=[], metavar="FILE",
                        help="gin file (repeatable; later files win)")
    parser.add_argument("--bind", action="append", default=[], metavar="BINDING",
                        help="gin binding such as 'train.steps = 200' (repeatable; wins over files)")
    parser.add_argument("--workdir", help="run directory (default: runs/<gin file stems>[-b<hash of the "
                                          "bindings>])")
    parser.add_argument("--resume-with-new-config", action="store_true",
                        help="resume a run whose saved config differs from this one (default: refuse)")
    parser.add_argument("--print-config", action="store_true",
                        help="resolve the config, build the model, print it with its size, and exit")
    parser.add_argument("--list", action="store_true", help="list every registered component and exit")
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)  # deepspeed launcher
    return parser.parse_args(argv)


def default_workdir(gin_files: list[str], bindings: list[str] = ()) -> str:
    """runs/<gin file stems>, plus a short hash of the bindings (other than train.steps), so that
    changing a --bind starts a new run instead of resuming the old one."""
    from engine.config import bindings_tag
    stems = [os.path.splitext(os.path.basename(f))[0] for f in gin_files]
    tag = bindings_tag(bindings)
    return os.path.join("runs", "-".join(stems + ([f"b{tag}"] if tag else [])) or "run")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from engine import config, program
    from engine.errors import ConfigError, StorageError, storage_cause
    from engine.trainer import NonFiniteError

    finished, workdir = False, None
    try:
        config.import_packages()
        if args.list:
            print(config.list_components())
            return 0
        if not args.gin:
            raise ConfigError("no --gin file given; e.g. --gin gin/hyperut/transformer_pvr.gin")
        config.parse(args.gin, args.bind)
        workdir = args.workdir or default_workdir(args.gin, args.bind)
        result = program.main(workdir, dry_run=args.print_config, config_change=args.resume_with_new_config)
        if args.print_config:
            print(program.dry_run_text(result))
        finished = True
    except ConfigError as error:
        if says(error):
            print(f"{error.label}: {config.format_error(error)}", file=sys.stderr)
        return 2
    except NonFiniteError as error:
        print(f"training stopped: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        cause = storage_cause(error)
        if not isinstance(error, StorageError) and cause is None:
            raise
        message = config.format_error(error) if isinstance(error, StorageError) else storage_message(cause, workdir)
        if says(error):
            print(f"storage error: {message}", file=sys.stderr)
        return StorageError.exit_code
    finally:
        from engine import distributed
        distributed.shutdown(finished=finished)
    return 0


def says(error: BaseException) -> bool:
    """Whether this rank prints `error`: an error every rank raises alike (a busy run directory, a
    checkpoint the ranks agreed failed) is printed once, by rank 0."""
    from engine import distributed
    return distributed.env_rank() == 0 or not getattr(error, "every_rank", False)


def storage_message(cause: OSError, workdir: str | None) -> str:
    """One line for a write the storage refused outside a checkpoint (a log, the config record)."""
    where = f" writing {cause.filename or workdir}" if cause.filename or workdir else ""
    return (f"{cause.strerror}{where}; the checkpoints saved so far are intact: free space (or fix the "
            "permissions) and run the same command to resume")


def exit_rank(code: int) -> None:
    """End a torchrun rank without interpreter finalization.

    By then the run has closed its logs and checkpoints and destroyed the process group, but DDP,
    FSDP or DeepSpeed may still hold the gloo/NCCL process-group objects; when the interpreter
    tears them down, a worker thread can be destroyed while still joinable, and the rank aborts
    ("terminate called without an active exception", exit -6, no Python frame) after a finished
    run: 2 in 30 FSDP runs on this machine. Flushing and leaving with os._exit skips that phase.
    """
    import logging
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_code = main()
    if "RANK" in os.environ:  # a torchrun rank
        exit_rank(exit_code)
    sys.exit(exit_code)
