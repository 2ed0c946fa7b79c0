#!/usr/bin/env bash
# Fixture accuracy of the CPU precisions (issue 15): COCO AP of the trained fixture (tests/data/fixture/) as
#   PyTorch reference | FP32 ONNX | INT8 --int8-target cpu | INT8 --int8-target tensorrt   on ONNX Runtime, and
#   every ONNX file again on OpenVINO under the f32 and bf16 hints (eval --openvino f32,bf16),
# plus detection agreement against PyTorch on val images: `verify` of the INT8 cpu file (ONNX Runtime) and of the
# FP32 file under OpenVINO bf16, the INT8 cpu file under OpenVINO f32. Report in
# benchmarks/results/accuracy/<machine>/<date>/cpu_precision/ (eval report + agreement_*.json).
#
#   benchmarks/run_accuracy_cpu.sh             # 200 val images
#   LIMIT=40 benchmarks/run_accuracy_cpu.sh    # a quick look
#
# INT8 exports use --no-verify (verification's INT8 limits are what these runs judge); calibration uses the
# training split's generator with its own seed, never the val images (as run_accuracy.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-tests/data/fixture/rtdetrv2_shapes}
VAL=${VAL:-tests/data/fixture/shapes_val}
MACHINE=${MACHINE:-$(hostname)-cpu}
OUT=${OUT:-benchmarks/results/accuracy/$MACHINE/$(date +%Y-%m-%d)}/cpu_precision
WORK=${WORK:-$(mktemp -d)}
LIMIT=${LIMIT:-}
# shellcheck source=benchmarks/accuracy_lib.sh
source benchmarks/accuracy_lib.sh

calib="$WORK/calib"
[ -d "$calib/images" ] || python3 benchmarks/fixture/make_dataset.py --split train --count 64 --seed 7 --out "$calib" >&2
onnx() {  # onnx NAME ARGS...: a dynamic-batch export into $WORK, reused when WORK already has it
  local name=$1; shift
  [ -f "$WORK/$name.onnx" ] || run onnx --model "$MODEL" --dynamic-batch --quiet -o "$WORK/$name.onnx" "$@"
}
echo "== exports into $WORK" >&2
onnx fp32
onnx int8_cpu --precision int8 --int8-target cpu --calib-images "$calib/images" --calib-count 64 --no-verify
onnx int8_tensorrt --precision int8 --int8-target tensorrt --calib-images "$calib/images" --calib-count 64 --no-verify

mkdir -p "$OUT"
# One eval per runtime/file group: OpenVINO 2026.4 refuses some Q/DQ files (its MatMul low-precision pass on the
# fixture's value_proj), and one refusal must not cost the other rows.
evaluate onnxruntime "$WORK/fp32.onnx" "$WORK/int8_cpu.onnx" "$WORK/int8_tensorrt.onnx"
evaluate openvino_fp32 "$WORK/fp32.onnx" --openvino f32,bf16
evaluate openvino_int8_cpu "$WORK/int8_cpu.onnx" --openvino f32,bf16
evaluate openvino_int8_tensorrt "$WORK/int8_tensorrt.onnx" --openvino f32
echo "== agreement on val images" >&2
agreement int8_cpu_onnxruntime "$WORK/int8_cpu.onnx"
agreement int8_cpu_openvino_f32 "$WORK/int8_cpu.onnx" --openvino f32
agreement fp32_openvino_bf16 "$WORK/fp32.onnx" --openvino bf16
agreement int8_tensorrt_onnxruntime "$WORK/int8_tensorrt.onnx"
agreement_table
echo "wrote $OUT" >&2
