#!/usr/bin/env bash
# Fixture accuracy of OpenVINO IRs (issue 25): COCO AP of the trained fixture (tests/data/fixture/) as
#   PyTorch reference | FP32 IR | NNCF INT8 IR, our recipe (rtdetr) | NNCF INT8 IR, NNCF's default recipe   on
#   OpenVINO CPU (f32 hint), next to our Q/DQ INT8 ONNX file (--int8-target cpu) under OpenVINO f32,
# plus each IR's export verdict (the held-out calibration images for INT8) and detection agreement against PyTorch
# on the 200 val images (`verify --images`). Report in benchmarks/results/accuracy/<machine>/<date>/openvino_ir/.
#
#   benchmarks/run_openvino_ir.sh             # 200 val images
#   LIMIT=40 benchmarks/run_openvino_ir.sh    # a quick look
#
# Calibration uses the training split's generator with its own seed, never the val images (as
# run_accuracy_cpu.sh): 80 images, the first 64 by name calibrate, the 16 left judge the INT8 IRs when they are
# made. An IR whose export verification fails is made again with --no-verify so its AP is still measured; the
# failure is kept in export_<name>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-tests/data/fixture/rtdetrv2_shapes}
VAL=${VAL:-tests/data/fixture/shapes_val}
MACHINE=${MACHINE:-$(hostname)-cpu}
OUT=${OUT:-benchmarks/results/accuracy/$MACHINE/$(date +%Y-%m-%d)}/openvino_ir
WORK=${WORK:-$(mktemp -d)}
LIMIT=${LIMIT:-}
# shellcheck source=benchmarks/accuracy_lib.sh
source benchmarks/accuracy_lib.sh
mkdir -p "$OUT"

calib="$WORK/calib"
[ -d "$calib/images" ] || python3 benchmarks/fixture/make_dataset.py --split train --count 80 --seed 7 --out "$calib" >&2
echo "== ONNX exports into $WORK" >&2
[ -f "$WORK/fp32.onnx" ] || run onnx --model "$MODEL" --dynamic-batch --quiet -o "$WORK/fp32.onnx"
[ -f "$WORK/int8_cpu.onnx" ] || run onnx --model "$MODEL" --dynamic-batch --quiet -o "$WORK/int8_cpu.onnx" \
  --precision int8 --int8-target cpu --calib-images "$calib/images" --calib-count 64 --no-verify
ir() {  # ir NAME ARGS...: an IR from fp32.onnx; its export log (verdict or failure) in export_NAME.txt
  local name=$1; shift
  echo "== openvino $name" >&2
  [ -f "$WORK/$name.xml" ] && return 0
  if ! run openvino "$WORK/fp32.onnx" --model "$MODEL" -o "$WORK/$name.xml" "$@" > "$OUT/export_$name.txt" 2>&1; then
    echo "(export verification failed; made again with --no-verify to measure its AP)" >> "$OUT/export_$name.txt"
    run openvino "$WORK/fp32.onnx" --model "$MODEL" -o "$WORK/$name.xml" "$@" --no-verify --quiet
  fi
}
ir fp32
ir nncf_rtdetr --precision int8 --calib-images "$calib/images" --calib-count 64
ir nncf_default --precision int8 --nncf-recipe default --calib-images "$calib/images" --calib-count 64
for name in fp32 nncf_rtdetr nncf_default; do cp "$WORK/$name.xml.json" "$OUT/$name.xml.json"; done

evaluate ir "$WORK/fp32.xml" "$WORK/nncf_rtdetr.xml" "$WORK/nncf_default.xml"
evaluate int8_cpu_onnx_openvino "$WORK/int8_cpu.onnx" --openvino f32
echo "== agreement on val images" >&2
agreement ir_fp32 "$WORK/fp32.xml"
agreement ir_nncf_rtdetr "$WORK/nncf_rtdetr.xml"
agreement ir_nncf_default "$WORK/nncf_default.xml"
agreement int8_cpu_openvino_f32 "$WORK/int8_cpu.onnx" --openvino f32
agreement_table
echo "wrote $OUT" >&2
