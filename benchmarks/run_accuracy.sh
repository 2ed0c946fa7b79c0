#!/usr/bin/env bash
# COCO accuracy of the trained fixture (tests/data/fixture/, benchmarks/fixture/README.md) through every export:
# the PyTorch reference, FP32 ONNX with each sampler, the discrete fine-tune (dsp), FP16 and INT8 (each
# calibration method). One eval report per group, in benchmarks/results/accuracy/<machine>/<date>/:
#   default/      reference (default sampler) + FP32, FP16, INT8 minmax / percentile / entropy ONNX files
#   openvino/     the FP32 file on ONNX Runtime and on OpenVINO CPU with the f32 and bf16 precision hints
#   discrete/     the same weights with --method discrete (reference: PyTorch with the discrete sampler)
#   dsp/          the discrete fine-tune, discrete sampler
#
#   benchmarks/run_accuracy.sh              # the committed set (200 val images)
#   LIMIT=20 benchmarks/run_accuracy.sh     # a quick look
#
# FP16 and INT8 files are exported with --no-verify so the table has every recipe, including the one verification
# refuses (entropy: its agreement is below the INT8 limits these numbers and benchmarks/fixture/agreement.py
# derived, docs/accuracy.md). FP32 exports are verified as usual. Calibration uses
# the training split's generator with its own seed (never the val images).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${MODEL:-tests/data/fixture/rtdetrv2_shapes}
DSP=${DSP:-tests/data/fixture/rtdetrv2_shapes_dsp}
VAL=${VAL:-tests/data/fixture/shapes_val}
MACHINE=${MACHINE:-$(hostname)-cpu}
OUT=${OUT:-benchmarks/results/accuracy/$MACHINE/$(date +%Y-%m-%d)}
WORK=${WORK:-$(mktemp -d)}
LIMIT=${LIMIT:-}
limit=()
[ -n "$LIMIT" ] && limit=(--limit "$LIMIT")

calib="$WORK/calib"
if [ ! -d "$calib/images" ]; then
  python3 benchmarks/fixture/make_dataset.py --split train --count 64 --seed 7 --out "$calib" >&2
fi

onnx() {  # onnx NAME ARGS...: a dynamic-batch export into $WORK
  local name=$1; shift
  rtdetr-export onnx --dynamic-batch --force --quiet -o "$WORK/$name.onnx" "$@"
}

echo "== exports into $WORK" >&2
onnx default_fp32 --model "$MODEL"
onnx default_fp16 --model "$MODEL" --precision fp16 --calib-images "$calib/images" --no-verify
for method in minmax percentile entropy; do
  onnx "default_int8_$method" --model "$MODEL" --precision int8 --calib-method "$method" \
    --calib-images "$calib/images" --calib-count 64 --no-verify
done
onnx discrete_fp32 --model "$MODEL" --method discrete
onnx dsp_fp32 --model "$DSP"

run_eval() {  # run_eval GROUP MODEL [eval options] ARTIFACTS...
  local group=$1 model=$2; shift 2
  echo "== eval $group" >&2
  rtdetr-export eval "$@" --model "$model" --coco "$VAL/instances_val.json" --images "$VAL/images" --batch 8 \
    "${limit[@]}" --report "$OUT/$group" --force --quiet
}
run_eval default "$MODEL" "$WORK"/default_fp32.onnx "$WORK"/default_fp16.onnx "$WORK"/default_int8_minmax.onnx \
  "$WORK"/default_int8_percentile.onnx "$WORK"/default_int8_entropy.onnx
run_eval openvino "$MODEL" --openvino f32,bf16 "$WORK"/default_fp32.onnx
run_eval discrete "$MODEL" "$WORK"/discrete_fp32.onnx
run_eval dsp "$DSP" "$WORK"/dsp_fp32.onnx
echo "wrote $OUT" >&2
