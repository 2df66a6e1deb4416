#!/usr/bin/env bash
# GPU figures for BENCHMARKS.md on one GPU (H100/H200), well inside 10 minutes.
#   bash bench/gpu.sh            # results in $OUT (default bench/out/)
# Installs ctdist with tensorflow[and-cuda] if TensorFlow is missing: from the network,
# or from a local wheelhouse (WHEELHOUSE=/path/to/wheels) on a machine without one.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=1
PY=${PYTHON:-python3}
if ! "$PY" -c "import tensorflow, keras_cv, tensorflow_datasets" 2>/dev/null; then
  "$PY" -m venv /tmp/ctdist-venv && PY=/tmp/ctdist-venv/bin/python
  if [ -n "${WHEELHOUSE:-}" ]; then
    "$PY" -m pip install -q --no-index --find-links "$WHEELHOUSE" -e '.[gpu,bench]'
  else
    "$PY" -m pip install -q -e '.[gpu,bench]'
  fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
DATA="--dataset=tfds_ctscan/synthetic --data_dir=/tmp/ctdist-tfds"
# 1. Full fine-tune (every base layer) at 224 px, mixed_float16, XLA, pipeline vs constant batch.
timeout 240 "$PY" -m ctdist.bench step $DATA --strategy=one_device --precision=mixed_float16 \
  --image_size=224 --batch_size=256 --phases=finetune --finetune_layers=-1 --jit_compile \
  --steps=30 --warmup=5 --repeats=3 --steps_per_loop=10 --json="$OUT/gpu_step.json" | tee "$OUT/gpu_step.txt"
# 2. float32 against mixed_float16, same step (XLA on).
timeout 180 "$PY" -m ctdist.bench precision $DATA --strategy=one_device --image_size=224 \
  --batch_size=256 --phases=finetune --finetune_layers=-1 --jit_compile --steps=20 --warmup=5 \
  --repeats=2 --steps_per_loop=10 --json="$OUT/gpu_precision.json" | tee "$OUT/gpu_precision.txt"
# 3. XLA off against on, mixed_float16.
timeout 150 "$PY" -m ctdist.bench xla $DATA --strategy=one_device --precision=mixed_float16 \
  --image_size=224 --batch_size=256 --phases=finetune --finetune_layers=-1 --steps=20 \
  --warmup=5 --repeats=2 --steps_per_loop=10 --json="$OUT/gpu_xla.json" | tee "$OUT/gpu_xla.txt"
