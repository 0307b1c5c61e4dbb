#!/usr/bin/env bash
# The one GPU check: the first and only thing to run on a GPU machine, <= 10 minutes on one H100.
# Parts, each with its own time limit and log in $OUT, so one failing part never hides the others:
#   smoke        8192^3 matmul TFLOP/s in fp32 and bf16
#   throughput   training where arithmetic dominates (d_model 1024, 8 layers, 512 tokens, batch 32):
#                fp32 vs bf16 vs bf16 + torch.compile; steps/s, achieved TFLOP/s and MFU
#   checkpoint   activation checkpointing at LRA's 4K tokens: peak CUDA memory and time, with vs without
#   strategies   every strategy on one rank over NCCL (bf16): steps/s and peak memory vs ddp
#   tests        the CUDA suite (not distributed, not slow) in the background, beside ...
#   studies      ... every study's `gpu` budget at once, each cut at $STUDIES_TIMEOUT; a study reuses its
#                finished runs when started again, so a later session carries on where this one stopped
# $OUT defaults to results/device/<date>-<GPU name>/, so a session's figures are kept beside the
# other results (the benchmarks write their JSON records there too).
#
#   OUT=/tmp/out bash launch/device_check.sh            # the default parts, <= 10 min
#   PARTS="smoke throughput" bash launch/device_check.sh
#
# Packages the GPU image lacks travel as wheels in .whl/ and, for sdist-only ones (deepspeed,
# fairscale), as copied package folders in .devsite/. Build them here (git-ignored through
# .git/info/exclude):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl gin-config==0.5.0 hjson==3.1.0 pydantic==2.13.4 \
#     pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2
#   cp -r $(python -c 'import deepspeed,os;print(os.path.dirname(deepspeed.__file__))') \
#         $(python -c 'import fairscale,os;print(os.path.dirname(fairscale.__file__))') .devsite/
set -u
cd "$(dirname "$0")/.."
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -cs 'A-Za-z0-9' '_' | sed 's/_$//')
OUT=${OUT:-$PWD/results/device/$(date +%Y-%m-%d)-${GPU:-no_gpu}}
mkdir -p "$OUT"
PARTS=${PARTS:-"smoke throughput checkpoint strategies tests studies"}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/.devsite:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
PY=python3
STEPS=${STEPS:-80}

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
  echo "=== throughput where arithmetic dominates: fp32 vs bf16 vs bf16 + compile"
  for arm in fp32 bf16 bf16_compile; do
    precision=${arm%_compile}
    compile=False; [ "$arm" = bf16_compile ] && compile=True
    timeout ${THROUGHPUT_TIMEOUT:-100} $PY launch/run.py --gin gin/hyperut/transformer_pvr.gin --workdir /tmp/tp-$arm \
      --bind "train.precision = '$precision'" --bind "train.compile = $compile" --bind "train.steps = $STEPS" \
      --bind "train.log_every = 1" --bind "train.eval_every = 0" --bind "train.checkpoint_every = 0" \
      --bind "train.batch_size = 32" --bind "LENGTH = 512" --bind "TransformerClassifier.d_model = 1024" \
      --bind "TransformerClassifier.num_layers = 8" --bind "TransformerClassifier.d_ff = 4096" \
      --bind "TransformerClassifier.num_heads = 16" \
      > "$OUT/throughput-$arm.log" 2>&1 || { echo "throughput $arm FAILED"; tail -30 "$OUT/throughput-$arm.log"; }
  done
  $PY - <<EOF 2>&1 | tee "$OUT/throughput.txt"
import json, statistics
rows = {}
for arm in ("fp32", "bf16", "bf16_compile"):
    try:
        records = [json.loads(l) for l in open(f"/tmp/tp-{arm}/metrics.jsonl")]
    except OSError:
        print(arm, "no metrics"); continue
    train = [r for r in records if r["split"] == "train" and "step_time_s" in r][$STEPS // 4:]
    if not train:
        print(arm, "too few steps logged"); continue
    memory = [r for r in records if r["split"] == "memory"]
    rows[arm] = 1 / statistics.median(r["step_time_s"] for r in train)
    tflops = statistics.median(r.get("perf/achieved_gflops", float("nan")) for r in train) / 1e3
    mfu = statistics.median(r.get("perf/mfu", float("nan")) for r in train)
    print(f"{arm}: {rows[arm]:.2f} steps/s (batch 32 x 512 tokens, d1024 x 8 layers), {tflops:.1f} TFLOP/s achieved, "
          f"MFU {mfu:.3f}, loss {train[0]['loss']:.3f} -> {train[-1]['loss']:.3f}", memory[-1] if memory else "")
for arm in ("bf16", "bf16_compile"):
    if arm in rows and "fp32" in rows:
        print(f"{arm} / fp32 steps/s = {rows[arm] / rows['fp32']:.2f}")
EOF
fi

if part checkpoint; then
  echo "=== activation checkpointing at 4K tokens (peak CUDA memory)"
  timeout ${CHECKPOINT_TIMEOUT:-120} $PY launch/bench.py activation_checkpointing --device cuda --batch 8 --steps 5 \
    --out "$OUT/activation_checkpointing.json" 2>&1 | tail -12 | tee "$OUT/activation_checkpointing.txt"
fi

if part strategies; then
  echo "=== strategies on 1 GPU over NCCL (bf16)"
  timeout ${STRATEGIES_TIMEOUT:-150} $PY launch/bench.py strategies --nproc 1 --steps ${STRATEGY_STEPS:-30} --repeats 1 --strategies ${STRATEGIES:-ddp,fsdp,deepspeed_zero1,deepspeed_zero2,deepspeed_zero3,fairscale} \
    --bind "train.precision = 'bf16'" --bind "train.batch_size = 256" \
    --bind "TransformerClassifier.d_model = 512" --bind "TransformerClassifier.num_layers = 6" \
    --bind "TransformerClassifier.d_ff = 2048" --bind "TransformerClassifier.num_heads = 8" --out "$OUT/strategies.json" \
    2>&1 | tail -40 | tee "$OUT/strategies.txt"
fi

# The suite on CUDA and the studies share the GPU after the timings (neither is a timing).
if part tests; then
  echo "=== tests on CUDA (in the background)"
  (timeout ${TESTS_TIMEOUT:-270} $PY -m pytest -q -n ${TEST_WORKERS:-6} -p no:cacheprovider --maxfail 40 \
    -m "not distributed and not slow" tests > /tmp/tests.log 2>&1; echo "pytest exit $?" >> /tmp/tests.log
   tail -80 /tmp/tests.log > "$OUT/tests.txt") &
fi

if part studies; then
  # Every study's gpu budget at once (small models: they share the GPU), each with its own time limit
  # and log; a study stopped by its limit keeps its finished runs, and the same command resumes it.
  echo "=== study gpu budgets, written under results/ (resumable)"
  STUDIES=${STUDIES:-"hyperut:--only=cpvr lra:--tasks=listops saturation scaling_archs deepnarrow dpf gaudi"}
  pids=()
  for entry in $STUDIES; do
    name=${entry%%:*}; extra=$([ "$name" = "$entry" ] || echo "${entry#*:}" | tr ',' ' ')
    (OMP_NUM_THREADS=2 timeout ${STUDIES_TIMEOUT:-270} $PY launch/reproduce.py $name --budget gpu $extra \
       --jobs ${STUDY_JOBS:-2} > "$OUT/study-$name.log" 2>&1; echo "$name gpu study exit $?" >> "$OUT/study-$name.log") &
    pids+=($!)
  done
  wait "${pids[@]}"
  tail -n 4 "$OUT"/study-*.log
fi

wait
echo "=== done"
