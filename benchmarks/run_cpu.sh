#!/usr/bin/env bash
# Reproduce the CPU latency reports: r18vd and r50vd, both samplers, FP32 (and INT8 --int8-target cpu when the
# onnx command offers --precision int8), batch 1 and 4, PyTorch and ONNX Runtime, next to the peer path (transformers ->
# torch.onnx -> onnxslim) built from the same weights. One report folder per preset x method:
#   benchmarks/results/<machine>/<date>/<preset>_<method>/report.{json,md,csv} + latency.png
#
#   benchmarks/run_cpu.sh                                                 # the committed set (quiet machine!)
#   ITERS=5 PRESETS=r18vd METHODS=discrete NOTE="DRAFT: noisy" benchmarks/run_cpu.sh   # a short run
#
# Settings (environment): PRESETS, METHODS, BATCH (1,4), ITERS (30), WARMUP (3), THREADS (library default),
# INT8 (auto | 0), MACHINE (<hostname>-cpu), OUT (benchmarks/results/$MACHINE/<date>), WORK (a temp folder for
# the ONNX files and transformers folders), NOTE (a line at the top of every report).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benchmarks/lib.sh
source benchmarks/lib.sh

bench_settings cpu
ITERS=${ITERS:-30}
WARMUP=${WARMUP:-3}
THREADS=${THREADS:-}
INT8=${INT8:-auto}

int8_available() {
  [ "$INT8" != 0 ] && rtdetr-export onnx --help | grep -q -- "--precision \[[a-z0-9|]*int8"
}

measure() {
  local folder=$1 method=$2 name=$3
  if int8_available; then
    # Judged in the report too, by the detection-agreement limits verification uses for INT8.
    # The cpu target: the Q/DQ layout ONNX Runtime's CPU provider fuses into integer kernels (the TensorRT layout
    # runs dequantized in float there, slower than FP32; docs/precision.md).
    if rtdetr-export onnx --model "$folder" --method "$method" --dynamic-batch --precision int8 --int8-target cpu \
        --no-verify --force --quiet -o "$WORK/${name}_int8.onnx"; then
      artifacts+=("$WORK/${name}_int8.onnx")
    else
      echo "INT8 export of $name failed: its report has no INT8 row" >&2
    fi
  fi
  # Progress goes to stderr; the tables bench prints on stdout are in report.md.
  rtdetr-export bench "${artifacts[@]}" --model "$folder" --method "$method" --peer \
    --backends torch,onnxruntime --batch "$BATCH" --iters "$ITERS" --warmup "$WARMUP" \
    ${THREADS:+--threads "$THREADS"} ${NOTE:+--note "$NOTE"} --report "$OUT/$name" --force > /dev/null
}

for_each_model measure
finish_reports
