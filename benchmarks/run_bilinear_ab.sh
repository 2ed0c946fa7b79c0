#!/usr/bin/env bash
# Paired latency of the three ways to read sampling points on ONNX Runtime CPU: r18vd (seeded random weights),
# 640x640, batch 1, exported as GridSample bilinear, gather bilinear and discrete, timed interleaved in one process
# by benchmarks/ab_onnx.py (first file = GridSample, the others' paired speedups are against it). Writes
# benchmarks/results/<machine>/<date>-bilinear/ab_r18vd_cpu.json; docs/model.md quotes it.
set -euo pipefail
cd "$(dirname "$0")/.."
MACHINE=${MACHINE:-2core-epyc}
OUT=benchmarks/results/$MACHINE/$(date -u +%F)-bilinear
WORK=${WORK:-build/bilinear-ab}
ITERS=${ITERS:-20}
THREADS=${THREADS:-1}
mkdir -p "$OUT" "$WORK"
export OMP_NUM_THREADS=$THREADS
python3 -m rtdetr_export onnx --preset r18vd --bilinear-op gridsample --no-verify --quiet --force -o "$WORK/r18vd_gridsample.onnx"
python3 -m rtdetr_export onnx --preset r18vd --bilinear-op gather --no-verify --quiet --force -o "$WORK/r18vd_gather.onnx"
python3 -m rtdetr_export onnx --preset r18vd --method discrete --no-verify --quiet --force -o "$WORK/r18vd_discrete.onnx"
PYTHONPATH=. python3 benchmarks/ab_onnx.py "$WORK/r18vd_gridsample.onnx" "$WORK/r18vd_gather.onnx" \
    "$WORK/r18vd_discrete.onnx" --iters "$ITERS" --threads "$THREADS" --json "$OUT/ab_r18vd_cpu.json"
