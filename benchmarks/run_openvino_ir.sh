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
limit=()
[ -n "$LIMIT" ] && limit=(--limit "$LIMIT")
run() { python3 -m rtdetr_export "$@"; }
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

evaluate() {  # evaluate GROUP ARGS...: one eval report; a runtime that cannot run a file leaves error.txt instead
  local group=$1; shift
  echo "== eval $group" >&2
  run eval "$@" --model "$MODEL" --coco "$VAL/instances_val.json" --images "$VAL/images" --batch 8 \
    "${limit[@]}" --report "$OUT/$group" --force --quiet 2> "$OUT/$group.stderr" \
    || { mkdir -p "$OUT/$group"; tail -1 "$OUT/$group.stderr" > "$OUT/$group/error.txt"; }
  rm -f "$OUT/$group.stderr"
}
evaluate ir "$WORK/fp32.xml" "$WORK/nncf_rtdetr.xml" "$WORK/nncf_default.xml"
evaluate int8_cpu_onnx_openvino "$WORK/int8_cpu.onnx" --openvino f32
echo "== agreement on val images" >&2
agreement() {  # agreement NAME FILE [ARGS]: verify's JSON (exit 1 = below the limits, still recorded)
  local name=$1 file=$2; shift 2
  run verify "$file" --model "$MODEL" --images "$VAL/images" --json "$@" > "$OUT/agreement_$name.json" \
    2> "$OUT/agreement_$name.err" || true
  [ -s "$OUT/agreement_$name.json" ] || python3 -c 'import json, sys; print(json.dumps({"error": sys.argv[1]}))' \
    "$(tail -1 "$OUT/agreement_$name.err")" > "$OUT/agreement_$name.json"
  rm -f "$OUT/agreement_$name.err"
}
agreement ir_fp32 "$WORK/fp32.xml"
agreement ir_nncf_rtdetr "$WORK/nncf_rtdetr.xml"
agreement ir_nncf_default "$WORK/nncf_default.xml"
agreement int8_cpu_openvino_f32 "$WORK/int8_cpu.onnx" --openvino f32
python3 - "$OUT" <<'PY' > "$OUT/agreement.md"
import json, pathlib, sys
print("| run | candidate | precision | passed | matched | labels | mean IoU | mean score diff |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for path in sorted(pathlib.Path(sys.argv[1]).glob("agreement_*.json")):
    v = json.loads(path.read_text())
    if "error" in v:
        print(f"| {path.stem[10:]} | - | - | {v['error']} | | | | |")
        continue
    value = lambda check: check[check["metric"]]  # noqa: E731
    worst = {k: min(value(r["outputs"][k]) for r in v["runs"]) for k in ("matched", "labels", "boxes")}
    score = max(value(r["outputs"]["scores"]) for r in v["runs"])
    print(f"| {path.stem[10:]} | {v['candidate']} | {v['precision']} | {v['passed']} | "
          f"{worst['matched']:.3f} | {worst['labels']:.3f} | {worst['boxes']:.3f} | {score:.4f} |")
PY
cat "$OUT/agreement.md"
echo "wrote $OUT" >&2
