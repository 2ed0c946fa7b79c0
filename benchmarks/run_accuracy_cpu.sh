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
limit=()
[ -n "$LIMIT" ] && limit=(--limit "$LIMIT")
run() { python3 -m rtdetr_export "$@"; }

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
evaluate() {  # evaluate GROUP ARGS...: one eval report; a runtime that cannot run a file leaves error.txt instead
  local group=$1; shift
  echo "== eval $group" >&2
  run eval "$@" --model "$MODEL" --coco "$VAL/instances_val.json" --images "$VAL/images" --batch 8 \
    "${limit[@]}" --report "$OUT/$group" --force --quiet 2> "$OUT/$group.stderr" \
    || { mkdir -p "$OUT/$group"; tail -1 "$OUT/$group.stderr" > "$OUT/$group/error.txt"; }
  rm -f "$OUT/$group.stderr"
}
# One eval per runtime/file group: OpenVINO 2026.4 refuses some Q/DQ files (its MatMul low-precision pass on the
# fixture's value_proj), and one refusal must not cost the other rows.
evaluate onnxruntime "$WORK/fp32.onnx" "$WORK/int8_cpu.onnx" "$WORK/int8_tensorrt.onnx"
evaluate openvino_fp32 "$WORK/fp32.onnx" --openvino f32,bf16
evaluate openvino_int8_cpu "$WORK/int8_cpu.onnx" --openvino f32,bf16
evaluate openvino_int8_tensorrt "$WORK/int8_tensorrt.onnx" --openvino f32
echo "== agreement on val images" >&2
agreement() {  # agreement NAME FILE [--openvino HINT]: verify's JSON (exit 1 = below the limits, still recorded)
  local name=$1 file=$2; shift 2
  run verify "$file" --model "$MODEL" --images "$VAL/images" --json "$@" > "$OUT/agreement_$name.json" \
    2> "$OUT/agreement_$name.err" || true
  [ -s "$OUT/agreement_$name.json" ] || python3 -c 'import json, sys; print(json.dumps({"error": sys.argv[1]}))' \
    "$(tail -1 "$OUT/agreement_$name.err")" > "$OUT/agreement_$name.json"
  rm -f "$OUT/agreement_$name.err"
}
agreement int8_cpu_onnxruntime "$WORK/int8_cpu.onnx"
agreement int8_cpu_openvino_f32 "$WORK/int8_cpu.onnx" --openvino f32
agreement fp32_openvino_bf16 "$WORK/fp32.onnx" --openvino bf16
agreement int8_tensorrt_onnxruntime "$WORK/int8_tensorrt.onnx"
python3 - "$OUT" <<'PY' > "$OUT/agreement.md"
import json, pathlib, sys
print("| run | candidate | precision | limits | passed | matched | labels | mean IoU | mean score diff |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for path in sorted(pathlib.Path(sys.argv[1]).glob("agreement_*.json")):
    v = json.loads(path.read_text())
    if "error" in v:
        print(f"| {path.stem[10:]} | - | - | - | {v['error']} | | | | |")
        continue
    value = lambda check: check[check["metric"]]  # noqa: E731
    worst = {k: min(value(r["outputs"][k]) for r in v["runs"]) for k in ("matched", "labels", "boxes")}
    score = max(value(r["outputs"]["scores"]) for r in v["runs"])
    print(f"| {path.stem[10:]} | {v['candidate']} | {v['precision']} | {v['precision'] if 'bf16' not in v['candidate'] else 'bf16'} | {v['passed']} | "
          f"{worst['matched']:.3f} | {worst['labels']:.3f} | {worst['boxes']:.3f} | {score:.4f} |")
PY
cat "$OUT/agreement.md"
echo "wrote $OUT" >&2
