# Shared settings and steps of run_cpu.sh and run_gpu.sh (sourced, not run).

# peer_folder PRESET: print the transformers folder for PRESET under $WORK, making it on first use. Both
# exports of a preset (ours and the peer's) come from this one save_pretrained folder.
peer_folder() {
  local folder="$WORK/hf_$1"
  [ -d "$folder" ] || python3 benchmarks/make_peer_folder.py --preset "$1" "$folder" >&2
  echo "$folder"
}

# export_fp32 FOLDER METHOD NAME: our dynamic-batch FP32 ONNX at $WORK/NAME_fp32.onnx.
# No export-time gate here: every report row carries its parity against the PyTorch reference (the same
# comparators as verification), so a query-selection tie in these random weights shows as a FAIL row instead
# of stopping the whole set.
export_fp32() {
  rtdetr-export onnx --model "$1" --method "$2" --dynamic-batch --no-verify --force --quiet \
    -o "$WORK/${3}_fp32.onnx"
}

# for_each_model STEP: for every preset x method, export our FP32 ONNX, then run STEP FOLDER METHOD NAME, which
# adds its artifacts to the array `artifacts` (the FP32 ONNX is already in it) and benchmarks them.
for_each_model() {
  local preset method folder name
  for preset in $PRESETS; do
    folder=$(peer_folder "$preset")
    for method in $METHODS; do
      name="${preset}_${method}"
      echo "== $name" >&2
      export_fp32 "$folder" "$method" "$name"
      artifacts=("$WORK/${name}_fp32.onnx")
      "$1" "$folder" "$method" "$name"
    done
  done
}

# bench_settings MACHINE_SUFFIX: the settings both scripts share, each overridable from the environment (see
# run_cpu.sh's header); ITERS, WARMUP and the rest are each script's own.
bench_settings() {
  PRESETS=${PRESETS:-"r18vd r50vd"}
  METHODS=${METHODS:-"default discrete"}
  BATCH=${BATCH:-1,4}
  MACHINE=${MACHINE:-"$(hostname -s)-$1"}
  OUT=${OUT:-"benchmarks/results/${MACHINE}/$(date +%Y-%m-%d)"}
  WORK=${WORK:-"$(mktemp -d -t rtdetr-bench-XXXXXX)"}
  NOTE=${NOTE:-}
  mkdir -p "$OUT" "$WORK"
}

# finish_reports: refresh the report indexes (benchmarks/README.md, the README headline) and say where things are.
finish_reports() {
  python3 benchmarks/index_reports.py
  echo "reports in $OUT (work files in $WORK)" >&2
}
