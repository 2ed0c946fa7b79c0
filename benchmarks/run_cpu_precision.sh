#!/usr/bin/env bash
# Lower precision on CPU (issue 15): r18vd discrete, batch 1, one interleaved bench of
#   ONNX Runtime:  FP32 | INT8 --int8-target cpu | INT8 --int8-target tensorrt (the TensorRT layout, for contrast)
#   OpenVINO:      FP32 file under the f32 and bf16 hints | INT8 (cpu target) file under f32
# next to PyTorch FP32, then a summary (benchmarks/precision_summary.py) with each row's paired ratio to ONNX
# Runtime FP32 and its parity. Report: benchmarks/results/<machine>/<date>/precision_r18vd_discrete/.
#
#   THREADS=2 ITERS=10 NOTE="shared machine, load ~5" benchmarks/run_cpu_precision.sh
#
# Settings (environment): PRESET (r18vd), METHOD (discrete), THREADS (2), ITERS (10), WARMUP (2), MACHINE,
# OUT, WORK (exports are reused when present there), NOTE.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=${PRESET:-r18vd}
METHOD=${METHOD:-discrete}
THREADS=${THREADS:-2}
ITERS=${ITERS:-10}
WARMUP=${WARMUP:-2}
MACHINE=${MACHINE:-"$(hostname -s)-cpu"}
OUT=${OUT:-"benchmarks/results/${MACHINE}/$(date +%Y-%m-%d)"}
WORK=${WORK:-"$(mktemp -d -t rtdetr-precision-XXXXXX)"}
NOTE=${NOTE:-}
run() { python3 -m rtdetr_export "$@"; }
name="${PRESET}_${METHOD}"
folder="$WORK/hf_$PRESET"
[ -d "$folder" ] || python3 benchmarks/make_peer_folder.py --preset "$PRESET" "$folder" >&2
export_once() {  # export_once FILE ARGS...: our dynamic-batch export, unless WORK already has it
  local file=$1; shift
  [ -f "$file" ] || run onnx --model "$folder" --method "$METHOD" --dynamic-batch --no-verify --quiet \
    -o "$file" "$@"
}
export_once "$WORK/${name}_fp32.onnx"
export_once "$WORK/${name}_int8_cpu.onnx" --precision int8 --int8-target cpu
export_once "$WORK/${name}_int8_tensorrt.onnx" --precision int8 --int8-target tensorrt

report="$OUT/precision_$name"
# Two benches share one report folder's numbers only through the summary; this one holds every row, so all
# ratios come from the same interleaved rounds.
run bench "$WORK/${name}_fp32.onnx" "$WORK/${name}_int8_cpu.onnx" "$WORK/${name}_int8_tensorrt.onnx" \
  --model "$folder" --method "$METHOD" --backends torch,onnxruntime,openvino --openvino f32,bf16 \
  --batch 1 --threads "$THREADS" --iters "$ITERS" --warmup "$WARMUP" --e2e-iters 0 \
  ${NOTE:+--note "$NOTE"} --report "$report" --force > /dev/null
python3 benchmarks/precision_summary.py "$report/report.json" > "$report/summary.md"
cat "$report/summary.md"
