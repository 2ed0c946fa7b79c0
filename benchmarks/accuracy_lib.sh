# Shared steps of the fixture accuracy scripts (run_accuracy_cpu.sh, run_openvino_ir.sh, run_accuracy_dfine.sh;
# sourced, not run). They read MODEL, VAL (the val set: instances_val.json + images/), OUT, and LIMIT (optional: only
# the first LIMIT val images).

run() { python3 -m rtdetr_export "$@"; }

# evaluate GROUP ARGS...: one `eval` report in $OUT/GROUP of the files and runtimes ARGS name. A runtime that cannot
# run a file leaves $OUT/GROUP/error.txt (its one-line error) instead, so one refusal does not cost the other groups.
evaluate() {
  local group=$1; shift
  echo "== eval $group" >&2
  run eval "$@" --model "$MODEL" --coco "$VAL/instances_val.json" --images "$VAL/images" --batch 8 \
    ${LIMIT:+--limit "$LIMIT"} --report "$OUT/$group" --force --quiet 2> "$OUT/$group.stderr" \
    || { mkdir -p "$OUT/$group"; tail -1 "$OUT/$group.stderr" > "$OUT/$group/error.txt"; }
  rm -f "$OUT/$group.stderr"
}

# agreement NAME FILE [ARGS]: `verify --images` of FILE on the val images against PyTorch, its JSON in
# $OUT/agreement_NAME.json (exit 1, below the limits, is still recorded; a one-line error is kept as {"error": ...}).
agreement() {
  local name=$1 file=$2; shift 2
  run verify "$file" --model "$MODEL" --images "$VAL/images" --json "$@" > "$OUT/agreement_$name.json" \
    2> "$OUT/agreement_$name.err" || true
  [ -s "$OUT/agreement_$name.json" ] || python3 -c 'import json, sys; print(json.dumps({"error": sys.argv[1]}))' \
    "$(tail -1 "$OUT/agreement_$name.err")" > "$OUT/agreement_$name.json"
  rm -f "$OUT/agreement_$name.err"
}

# agreement_table: $OUT/agreement.md, one row per agreement_*.json (benchmarks/agreement_table.py), also printed.
agreement_table() {
  python3 benchmarks/agreement_table.py "$OUT" > "$OUT/agreement.md"
  cat "$OUT/agreement.md"
}
