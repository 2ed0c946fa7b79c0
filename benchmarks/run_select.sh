#!/usr/bin/env bash
# `rtdetr-export select` on the trained fixture (tests/data/fixture/): every CPU candidate (ONNX Runtime FP32 and
# INT8 --int8-target cpu, OpenVINO f32/bf16 on each file, the NNCF INT8 OpenVINO IR under bf16 where the CPU has
# it, else f32) timed in one interleaved run at batch 1 and 4, its AP on
# the 200 val images, the Pareto front, and the fastest file within the AP budget. Report in
# benchmarks/results/select/<machine>/<date>/fixture/ (the chosen file itself stays in $WORK).
#
#   benchmarks/run_select.sh                       # 200 val images, 2 threads, 10 rounds per batch
#   LIMIT=40 ITERS=3 benchmarks/run_select.sh      # a quick look
#
# Calibration reads images of the training split's generator (seed 7, as run_accuracy_cpu.sh), never the val
# images: the first 64 calibrate, the other 16 verify the INT8 files (ONNX and IR). The chosen artifact is
# $WORK/chosen.onnx, or $WORK/chosen.xml + .bin when the IR wins.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-tests/data/fixture/rtdetrv2_shapes}
VAL=${VAL:-tests/data/fixture/shapes_val}
MACHINE=${MACHINE:-$(hostname)-cpu}
OUT=${OUT:-benchmarks/results/select/$MACHINE/$(date +%Y-%m-%d)/fixture}
WORK=${WORK:-$(mktemp -d)}
BUDGET=${BUDGET:-0.005}
ITERS=${ITERS:-10}
THREADS=${THREADS:-2}
LIMIT=${LIMIT:-}
limit=()
[ -n "$LIMIT" ] && limit=(--limit "$LIMIT")

calib="$WORK/calib"
[ -d "$calib/images" ] || python3 benchmarks/fixture/make_dataset.py --split train --count 80 --seed 7 --out "$calib" >&2
mkdir -p "$(dirname "$OUT")"
uptime >&2
python3 -m rtdetr_export select --model "$MODEL" --coco "$VAL/instances_val.json" --images "$VAL/images" \
  --calib-images "$calib/images" --calib-count 64 --max-ap-drop "$BUDGET" --batch 4 --iters "$ITERS" \
  --threads "$THREADS" "${limit[@]}" -o "$WORK/chosen.onnx" --report "$OUT" --force
uptime >&2
echo "wrote $OUT (chosen file: $WORK/chosen.onnx)" >&2
