#!/usr/bin/env bash
# The roofline column on two models (docs/benchmarks.md, "Roofline"): how close each row runs to this machine's
# measured compute peak in its precision. One interleaved bench per model, batch 1 and 4:
#   fixture   the trained fixture (tests/data/fixture/rtdetrv2_shapes, 320x320): FP32 and INT8 (--int8-target cpu,
#             calibrated on the fixture's validation images) on ONNX Runtime and OpenVINO (f32, bf16), PyTorch FP32
#   r18vd     r18vd with seeded random weights, discrete sampler, 640x640: the same rows (INT8 on synthetic scenes)
# Reports: benchmarks/results/<machine>/<date>/roofline_{fixture,r18vd_discrete}/.
#
#   THREADS=2 ITERS=10 NOTE="shared machine, load ~5" nice -n 5 benchmarks/run_roofline.sh
#
# Settings (environment): MODELS ("fixture r18vd"), BATCH (1,4), THREADS (2), ITERS (10), WARMUP (2), MACHINE,
# OUT, WORK (exports are reused when present there), NOTE.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-"fixture r18vd"}
BATCH=${BATCH:-1,4}
THREADS=${THREADS:-2}
ITERS=${ITERS:-10}
WARMUP=${WARMUP:-2}
MACHINE=${MACHINE:-"$(hostname -s)-cpu"}
OUT=${OUT:-"benchmarks/results/${MACHINE}/$(date +%Y-%m-%d)"}
WORK=${WORK:-"$(mktemp -d -t rtdetr-roofline-XXXXXX)"}
NOTE=${NOTE:-}
run() { python3 -m rtdetr_export "$@"; }
mkdir -p "$OUT" "$WORK"

for model in $MODELS; do
  case "$model" in
    fixture) source_args=(--model tests/data/fixture/rtdetrv2_shapes) bench_args=(--model tests/data/fixture/rtdetrv2_shapes)
             int8_args=(--calib-images tests/data/fixture/shapes_val/images); name=fixture ;;
    r18vd)   source_args=(--preset r18vd --method discrete) bench_args=() int8_args=(); name=r18vd_discrete ;;
    *) echo "unknown model $model (fixture or r18vd)" >&2; exit 1 ;;
  esac
  fp32="$WORK/${name}_fp32.onnx" int8="$WORK/${name}_int8_cpu.onnx"
  [ -f "$fp32" ] || run onnx "${source_args[@]}" --dynamic-batch --no-verify --quiet -o "$fp32"
  [ -f "$int8" ] || run onnx "${source_args[@]}" --dynamic-batch --no-verify --quiet -o "$int8" \
    --precision int8 --int8-target cpu "${int8_args[@]}"
  # The reference is rebuilt from the files' provenance: the preset's seeded weights, or the fixture's folder
  # (named again: a checkpoint is not looked up by the path it was exported from).
  run bench "$fp32" "$int8" "${bench_args[@]}" --backends torch,onnxruntime,openvino --openvino f32,bf16 --batch "$BATCH" \
    --threads "$THREADS" --iters "$ITERS" --warmup "$WARMUP" --e2e-iters 0 ${NOTE:+--note "$NOTE"} \
    --report "$OUT/roofline_$name" --force > /dev/null
  echo "report: $OUT/roofline_$name" >&2
done
python3 benchmarks/index_reports.py
