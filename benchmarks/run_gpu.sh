#!/usr/bin/env bash
# GPU latency reports, for a CUDA machine (none has been run yet: see benchmarks/README.md). Per preset x
# method, on one GPU: PyTorch eager FP32, FP16 and torch.compile, transformers' model (FP32, FP16) as the peer,
# ONNX Runtime with the CUDA execution provider (needs onnxruntime-gpu; listed as skipped otherwise), and
# TensorRT FP32/FP16 engines built by `rtdetr-export trt` (needs tensorrt; skipped otherwise).
#
#   benchmarks/run_gpu.sh
#   ITERS=50 PRESETS=r18vd METHODS=discrete benchmarks/run_gpu.sh
#
# Settings (environment): as run_cpu.sh, with ITERS (200), WARMUP (20), MACHINE (<hostname>-<gpu name>).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benchmarks/lib.sh
source benchmarks/lib.sh

bench_settings "$(python3 -c "import torch; print(torch.cuda.get_device_name(0).replace(' ', '-'))")"
ITERS=${ITERS:-200}
WARMUP=${WARMUP:-20}
MAX_BATCH=$(echo "$BATCH" | tr ',' '\n' | sort -n | tail -1)

measure() {
  local folder=$1 method=$2 name=$3
  if python3 -c "import tensorrt" 2>/dev/null; then
    if rtdetr-export trt --onnx "$WORK/${name}_fp32.onnx" --model "$folder" --min-batch 1 --opt-batch 1 \
        --max-batch "$MAX_BATCH" --force --quiet -o "$WORK/${name}_fp32.engine"; then
      artifacts+=("$WORK/${name}_fp32.engine")
    else
      echo "TensorRT FP32 build of $name failed: no FP32 engine row" >&2
    fi
    if rtdetr-export trt --model "$folder" --method "$method" --fp16 --min-batch 1 --opt-batch 1 \
        --max-batch "$MAX_BATCH" --force --quiet -o "$WORK/${name}_fp16.engine"; then
      artifacts+=("$WORK/${name}_fp16.engine")
    else
      echo "TensorRT FP16 build of $name failed: no FP16 engine row" >&2
    fi
  fi
  # Progress goes to stderr; the tables bench prints on stdout are in report.md.
  rtdetr-export bench "${artifacts[@]}" --model "$folder" --method "$method" --peer --device cuda \
    --backends torch,onnxruntime,tensorrt --batch "$BATCH" --iters "$ITERS" --warmup "$WARMUP" \
    ${NOTE:+--note "$NOTE"} --report "$OUT/$name" --force > /dev/null
}

for_each_model measure
finish_reports
