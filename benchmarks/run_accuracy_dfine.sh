#!/usr/bin/env bash
# The D-FINE fixture's precision costs (issue 24): every precision export of tests/data/fixture/dfine_shapes with
# its own verification (the verdict is recorded), then COCO AP of each file on the 200 val images:
#   PyTorch | FP32 ONNX | FP16 | INT8 --int8-target tensorrt | INT8 --int8-target cpu   on ONNX Runtime, and the
#   FP32 file on OpenVINO under the f32 and bf16 hints.
# A file its verification refuses is not written; it is then exported again with --no-verify (`*_unverified`) so
# the AP it would have had is measured too. Report in benchmarks/results/accuracy/<machine>/<date>/dfine/.
#
#   benchmarks/run_accuracy_dfine.sh
#
# Calibration as the RT-DETRv2 rows (run_accuracy_cpu.sh): 64 images of the training generator with its own seed,
# never the val images; verification reads the val images (--images), what the agreement limits were set on.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-tests/data/fixture/dfine_shapes}
VAL=${VAL:-tests/data/fixture/shapes_val}
MACHINE=${MACHINE:-$(hostname)-cpu}
OUT=${OUT:-benchmarks/results/accuracy/$MACHINE/$(date +%Y-%m-%d)}/dfine
WORK=${WORK:-$(mktemp -d)}
LIMIT=${LIMIT:-}
# shellcheck source=benchmarks/accuracy_lib.sh
source benchmarks/accuracy_lib.sh

calib="$WORK/calib"
[ -d "$calib/images" ] || python3 benchmarks/fixture/make_dataset.py --split train --count 64 --seed 7 --out "$calib" >&2
mkdir -p "$OUT"
: > "$OUT/verdicts.txt"
export_one() {  # export_one NAME ARGS...: verified export; if refused, the refusal is recorded and an unverified copy made
  local name=$1; shift
  echo "== export $name" >&2
  if run onnx --model "$MODEL" --dynamic-batch --quiet --images "$VAL/images" -o "$WORK/$name.onnx" "$@" \
      2> "$WORK/$name.stderr"; then
    echo "$name: verified" >> "$OUT/verdicts.txt"
    files+=("$WORK/$name.onnx")
  else
    echo "$name: REFUSED: $(grep '^error' "$WORK/$name.stderr" | tail -1)" >> "$OUT/verdicts.txt"
    run onnx --model "$MODEL" --dynamic-batch --quiet --no-verify -o "$WORK/${name}_unverified.onnx" "$@"
    files+=("$WORK/${name}_unverified.onnx")
  fi
}
files=()
export_one fp32
export_one fp16 --precision fp16
export_one int8_tensorrt --precision int8 --int8-target tensorrt --calib-images "$calib/images" --calib-count 64
export_one int8_cpu --precision int8 --int8-target cpu --calib-images "$calib/images" --calib-count 64
cat "$OUT/verdicts.txt" >&2

evaluate onnxruntime "${files[@]}"
evaluate openvino_fp32 "${files[0]}" --openvino f32,bf16
echo "== verify the FP32 file under OpenVINO's bf16 hint" >&2
run verify "${files[0]}" --model "$MODEL" --images "$VAL/images" --openvino bf16 --json \
  > "$OUT/verify_fp32_openvino_bf16.json" || true
echo "wrote $OUT" >&2
