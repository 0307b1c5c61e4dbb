#!/usr/bin/env bash
# One-shot CUDA check of the engine on a single-GPU machine: the test suite on CUDA, fp32 vs
# bf16 throughput, every strategy over NCCL on one rank, and the LRA small reproduction with
# all attentions run side by side on the GPU. Each part has its own time limit and writes its
# log to $OUT so one failing part never hides the others. $OUT defaults to
# results/device/<date>-<GPU name>/, so a session's figures are kept as a record beside the
# other results (the strategies part also writes the benchmark's JSON record, strategies.json).
#
#   OUT=/tmp/out bash launch/device_check.sh            # everything
#   PARTS="smoke throughput" bash launch/device_check.sh
#
# Packages the GPU image lacks travel as wheels in .whl/ and, for sdist-only ones (deepspeed,
# fairscale), as copied package folders in .devsite/; a prebuilt LRA data cache in .lracache/.
# Build them here (all three are git-ignored through .git/info/exclude):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl gin-config==0.5.0 hjson==3.1.0 pydantic==2.13.4 \
#     pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2
#   cp -r $(python -c 'import deepspeed,os;print(os.path.dirname(deepspeed.__file__))') \
#         $(python -c 'import fairscale,os;print(os.path.dirname(fairscale.__file__))') .devsite/
#   python launch/reproduce.py lra --budget small --cache .lracache ... (or any run that builds
#     the ListOps/Pathfinder caches with LRAListOps.cache / LRAPathfinder.cache = '.lracache')
set -u
cd "$(dirname "$0")/.."
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -cs 'A-Za-z0-9' '_' | sed 's/_$//')
OUT=${OUT:-$PWD/results/device/$(date +%Y-%m-%d)-${GPU:-no_gpu}}
mkdir -p "$OUT"
PARTS=${PARTS:-"smoke throughput strategies tests lra"}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/.devsite:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
PY=python3
STEPS=${STEPS:-200}

part() { [[ " $PARTS " == *" $1 "* ]]; }

if part smoke; then
  echo "=== smoke"
  nvidia-smi -L
  $PY - <<'EOF' 2>&1 | tee "$OUT/smoke.txt"
import time, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
print("bf16 supported:", torch.cuda.is_bf16_supported(), "nccl:", torch.distributed.is_nccl_available())
for dtype in (torch.float32, torch.bfloat16):
    a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize(); start = time.perf_counter()
    for _ in range(10):
        a @ a
    torch.cuda.synchronize()
    print(f"{dtype}: {10 * 2 * 8192**3 / (time.perf_counter() - start) / 1e12:.0f} TFLOP/s (8192^3 matmul)")
EOF
fi

if part throughput; then
  echo "=== single-GPU throughput, fp32 vs bf16"
  for precision in fp32 bf16; do
    timeout ${THROUGHPUT_TIMEOUT:-120} $PY launch/run.py --gin gin/hyperut/transformer_pvr.gin --workdir /tmp/tp-$precision \
      --bind "train.precision = '$precision'" --bind "train.steps = $STEPS" --bind "train.log_every = 1" \
      --bind "train.eval_every = 0" --bind "train.checkpoint_every = 0" --bind "train.batch_size = 256" \
      --bind "TransformerClassifier.d_model = 512" --bind "TransformerClassifier.num_layers = 6" \
      --bind "TransformerClassifier.d_ff = 2048" --bind "TransformerClassifier.num_heads = 8" \
      > /tmp/throughput-$precision.log 2>&1 || { echo "throughput $precision FAILED"; tail -30 /tmp/throughput-$precision.log; }
  done
  $PY - <<EOF 2>&1 | tee "$OUT/throughput.txt"
import json, statistics
rows = {}
for precision in ("fp32", "bf16"):
    try:
        records = [json.loads(l) for l in open(f"/tmp/tp-{precision}/metrics.jsonl")]
    except OSError:
        print(precision, "no metrics"); continue
    times = [r["step_time_s"] for r in records if r["split"] == "train" and "step_time_s" in r][$STEPS // 4:]
    if not times:
        print(precision, "too few steps logged"); continue
    memory = [r for r in records if r["split"] == "memory"]
    loss = [r["loss"] for r in records if r["split"] == "train" and "loss" in r]
    rows[precision] = 1 / statistics.median(times)
    print(f"{precision}: {rows[precision]:.1f} steps/s (batch 256, d512 x 6 layers), loss {loss[0]:.3f} -> {loss[-1]:.3f}",
          memory[-1] if memory else "")
if len(rows) == 2:
    print(f"bf16 / fp32 steps/s = {rows['bf16'] / rows['fp32']:.2f}")
EOF
fi

if part strategies; then
  echo "=== strategies on 1 GPU over NCCL (bf16)"
  timeout ${STRATEGIES_TIMEOUT:-240} $PY launch/bench.py strategies --nproc 1 --steps ${STRATEGY_STEPS:-40} --repeats 1 --strategies ${STRATEGIES:-ddp,fsdp,deepspeed_zero1,deepspeed_zero2,deepspeed_zero3,fairscale} \
    --bind "train.precision = 'bf16'" --bind "train.batch_size = 256" \
    --bind "TransformerClassifier.d_model = 512" --bind "TransformerClassifier.num_layers = 6" \
    --bind "TransformerClassifier.d_ff = 2048" --bind "TransformerClassifier.num_heads = 8" --out "$OUT/strategies.json" \
    2>&1 | tail -40 | tee "$OUT/strategies.txt"
fi

# The suite on CUDA and the LRA runs share the GPU (neither is a timing), after the timings.
if part tests; then
  echo "=== tests on CUDA (in the background)"
  (timeout ${TESTS_TIMEOUT:-270} $PY -m pytest -q -n ${TEST_WORKERS:-6} -p no:cacheprovider --maxfail 40 tests \
    > /tmp/tests.log 2>&1; echo "pytest exit $?" >> /tmp/tests.log; tail -80 /tmp/tests.log > "$OUT/tests.txt") &
fi

if part lra; then
  echo "=== LRA small, all attentions in parallel on the GPU"
  CACHE=$PWD/.lracache
  RUNS=/tmp/lra-runs
  ATTENTIONS=$(ls gin/lra/attention/*.gin | xargs -n1 basename | sed 's/\.gin$//' | tr '\n' ' ')
  TASKS=${LRA_TASKS:-"listops pathfinder"}
  pids=()
  for task in $TASKS; do
    for attention in $ATTENTIONS; do
      OMP_NUM_THREADS=1 timeout ${LRA_TIMEOUT:-270} $PY launch/reproduce.py lra --tasks $task --attentions $attention \
        --budget small --cache "$CACHE" --runs $RUNS --out /tmp/lra-out/$task-$attention \
        > /tmp/lra-$task-$attention.log 2>&1 &
      pids+=($!)
    done
  done
  wait "${pids[@]}"
  tail -n 3 /tmp/lra-*.log > "$OUT/lra.txt"
  # The finished runs are reused: this pass only evaluates and writes the combined table.
  timeout ${LRA_EVAL_TIMEOUT:-90} $PY launch/reproduce.py lra --tasks "$(echo $TASKS | tr ' ' ',')" --budget small \
    --cache "$CACHE" --runs $RUNS --out "$OUT/lra" >> "$OUT/lra.txt" 2>&1
  cat "$OUT/lra/table.md"
fi
wait
echo "=== done"
