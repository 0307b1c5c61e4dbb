"""Consolidate a checkpoint of any strategy into one safetensors file.

    python launch/export.py runs/transformer_pvr --out model.safetensors
    python launch/export.py runs/x/checkpoints/step_000500 --out model.safetensors

The file then starts any run, under any strategy: --bind "train.init_from = 'model.safetensors'".
The checkpoint is verified first (sizes, SHA-256, no pickle that would run code); from a run
folder a damaged newest checkpoint is skipped for the newest intact one, and said so. Exit codes:
0 written, 2 no usable checkpoint, 3 the output could not be written (no space, no permission).
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a run directory (its latest checkpoint) or a checkpoint folder")
    parser.add_argument("--out", required=True, help="the .safetensors file to write")
    args = parser.parse_args(argv)
    from engine import checkpoint
    from engine.errors import ConfigError, StorageError, storage_cause

    try:
        # Verified first: a damaged newest checkpoint of a run folder is skipped (and said so).
        path = checkpoint.resolve(args.source, report=lambda line: print(line, file=sys.stderr))
        count = checkpoint.export_safetensors(path, args.out)
    except ConfigError as error:
        print(f"export error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if storage_cause(error) is None:
            raise
        print(f"export error: cannot write {args.out}: {error.strerror}", file=sys.stderr)
        return StorageError.exit_code
    print(f"wrote {count} tensors from {path} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
