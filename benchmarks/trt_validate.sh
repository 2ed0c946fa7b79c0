#!/usr/bin/env bash
# Build, verify and time FP32 / FP16 / INT8 TensorRT engines of RT-DETRv2-S (r18vd) with both deformable-
# attention samplers, on a machine with TensorRT 10 or 11 and an NVIDIA GPU. Every engine is verified against
# the PyTorch FP32 reference by `rtdetr-export trt` itself (a failing engine is not written and the script
# stops); the JSON records it writes go to benchmarks/results/<machine>/<date>/, the engines to a scratch folder.
#
#   benchmarks/trt_validate.sh [--model CHECKPOINT] [--calib-images DIR] [--images DIR] [--machine NAME]
#                              [--max-batch N] [--work DIR]
#
# --model        r18vd checkpoint (transformers folder or original .pth); default: seeded random weights
# --calib-images real images for INT8 calibration (default: synthetic scenes, which the records say)
# --images       real images for verification (default: synthetic scenes)
# --machine      results folder name (default: GPU name, e.g. NVIDIA-H100-80GB-HBM3)
# --max-batch    largest batch of the engines' profile (default 8; latency is timed at batch 1)
# --work         where the ONNX files and engines go (default: a new temporary folder, kept)
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=(--preset r18vd); CALIB=(); IMAGES=(); MACHINE=""; MAX_BATCH=8; WORK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --model) MODEL=(--model "$2"); shift 2 ;;
    --calib-images) CALIB=(--calib-images "$2"); shift 2 ;;
    --images) IMAGES=(--images "$2"); shift 2 ;;
    --machine) MACHINE="$2"; shift 2 ;;
    --max-batch) MAX_BATCH="$2"; shift 2 ;;
    --work) WORK="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 1 ;;
  esac
done

if ! python3 -c "import tensorrt, torch; assert hasattr(tensorrt, 'Builder') and torch.cuda.is_available()" \
    2>/dev/null; then
  echo "error: needs TensorRT (pip install tensorrt) and a CUDA GPU visible to PyTorch" >&2
  exit 2
fi
if [ -z "$MACHINE" ]; then
  MACHINE=$(python3 -c "import torch; print(torch.cuda.get_device_name(0))" | tr -c 'A-Za-z0-9._\n-' '-')
fi
OUT="benchmarks/results/$MACHINE/$(date +%Y-%m-%d)"
WORK=${WORK:-$(mktemp -d -t rtdetr-trt-validate.XXXXXX)}
mkdir -p "$OUT" "$WORK"
echo "records -> $OUT, engines -> $WORK" >&2

for method in discrete default; do
  for precision in fp32 fp16 int8; do
    case "$precision" in
      fp32) FLAGS=() ;;
      fp16) FLAGS=(--fp16) ;;
      int8) FLAGS=(--int8 "${CALIB[@]}") ;;
    esac
    name="r18vd_${method}_${precision}"
    echo "== $name" >&2
    rtdetr-export trt "${MODEL[@]}" --method "$method" "${FLAGS[@]}" "${IMAGES[@]}" \
      --min-batch 1 --opt-batch 1 --max-batch "$MAX_BATCH" --timing-cache "$WORK/timing.cache" \
      --json --force -o "$WORK/$name.engine" > "$WORK/$name.engine.record"
    mv "$WORK/$name.engine.record" "$OUT/$name.engine.json"  # only a finished, verified build gets a record
    cp "$WORK/$name.json" "$OUT/$name.onnx.json"  # the precision ONNX's own record (recipe, CPU parity)
  done
done

python3 - "$OUT" <<'EOF' | tee "$OUT/summary.md"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print("| engine | TensorRT | GPU | precision | parity | p50 ms | p99 ms | images/s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for path in sorted(out.glob("*.engine.json")):
    r = json.loads(path.read_text())
    lat = r["latency"]
    print(f"| {path.name[:-len('.engine.json')]} | {r['tensorrt']} | {r['gpu']['name']} | {r['precision']} | "
          f"{'pass' if r['verification']['passed'] else 'FAIL'} | {lat['p50_ms']:.3f} | {lat['p99_ms']:.3f} | "
          f"{lat['images_per_s']:.1f} |")
EOF
