#!/usr/bin/env bash
# Plain multi-node torchrun with c10d rendezvous. Run the same command on every node; node
# ranks are assigned by the rendezvous. Example, on each of 2 nodes with 8 GPUs:
#
#   MASTER=node0.example.org:29500 NNODES=2 GPUS=8 \
#     launch/multinode_torchrun.sh --gin gin/hyperut_pvr.gin --gin gin/strategy/fsdp.gin
#
# The run directory (--workdir, default runs/<gin stems>) must be on a filesystem all nodes
# share: rank 0 writes logs and renames checkpoints into place; every rank reads them on resume.
set -euo pipefail
: "${MASTER:?set MASTER=host:port of the rendezvous (the address of any node and a free port)}"
: "${NNODES:?set NNODES}"
if [ -z "${GPUS:-}" ]; then
    GPUS=$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")
fi
cd "$(dirname "$0")/.."
exec torchrun --nnodes "$NNODES" --nproc-per-node "$GPUS" \
    --rdzv-backend c10d --rdzv-endpoint "$MASTER" --rdzv-id "${RUN_ID:-gintrain}" \
    --max-restarts "${MAX_RESTARTS:-3}" \
    launch/run.py "$@"
