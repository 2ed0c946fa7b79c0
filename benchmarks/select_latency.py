#!/usr/bin/env python3
"""Latency only: select's candidates for r18vd with seeded random weights, made and timed exactly as
`rtdetr-export select` makes and times them (``measure_latency``: one interleaved run, bench's pause before each
call), without AP (random weights have none) and without verification of the files (random weights' INT8
detections mean nothing; parity on the first image is still measured and shown).

    python3 benchmarks/select_latency.py --calib-images DIR --images DIR --out benchmarks/results/select/M/D/r18vd

writes report.json (every sample) and report.md (p50 at batch 1, img/s at the throughput batch, the paired ratio
to ONNX Runtime FP32 from the same rounds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from rtdetr_export.artifact import PrecisionOptions
from rtdetr_export.bench.machine import load_average, machine_info
from rtdetr_export.imaging import list_images
from rtdetr_export.select import CPU_CANDIDATES, SelectOptions, export_recipe, measure_latency, openvino_int8_recipe
from rtdetr_export.stats import paired_speedup
from rtdetr_export.weights import load_model

_FP32 = export_recipe("fp32", "FP32 ONNX (not verified)", lambda c: PrecisionOptions(), verify=False)
UNVERIFIED = {
    "fp32": _FP32,
    "int8_cpu": export_recipe("int8_cpu", "INT8 ONNX, --int8-target cpu (not verified)", lambda c: PrecisionOptions(
        "int8", c.calib_images, c.calib_count, int8_target="cpu"), verify=False),
    "nncf_int8": openvino_int8_recipe("nncf_int8", "INT8 OpenVINO IR, NNCF rtdetr recipe (not verified)", _FP32,
                                      verify=False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="r18vd")
    parser.add_argument("--method", default=None)
    parser.add_argument("--images", required=True, help="images the timed batches are made of")
    parser.add_argument("--calib-images", required=True)
    parser.add_argument("--calib-count", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    load_before = load_average()
    model = load_model(preset=args.preset, method=args.method)
    candidates = tuple(dataclasses.replace(c, artifact=UNVERIFIED[c.artifact.name]) for c in CPU_CANDIDATES)
    options = SelectOptions("-", args.images, calib_images=args.calib_images, calib_count=args.calib_count,
                            batch=args.batch, iters=args.iters, threads=args.threads, candidates=candidates)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="rtdetr-select-latency-") as tmp:
        rows = measure_latency(model, options, list_images(args.images)[:args.batch], Path(tmp), log)
    base = rows[0]
    machine = machine_info()
    lines = [f"# select's candidates, latency only: {args.preset} (seeded random weights)", "",
             f"{machine['cpu']['model']}, {args.threads} threads, {args.iters} interleaved rounds per batch, load "
             f"average {load_before} -> {load_average()}; files not verified (random weights), parity on one image "
             "shown as measured.", "",
             f"| candidate | runtime | p50 b1 ms | paired vs ORT FP32 b1 | p50 b{args.batch} ms | img/s b{args.batch} "
             "| size MB | parity here |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        if not r.latency_ms:
            lines.append(f"| {r.name} | {r.runtime} | {r.status}: {r.reason} | | | | | |")
            continue
        ratio = paired_speedup(base.samples_ms[1], r.samples_ms[1]) if base.samples_ms.get(1) else None
        parity = "-" if r.parity is None else f"{r.parity.passed} ({r.parity.limits.split(' ')[0]})"
        lines.append(f"| {r.name} | {r.runtime} | {r.p50(1):.1f} | {ratio:.2f}x | {r.p50(args.batch):.1f} | "
                     f"{r.throughput_ips[args.batch]:.2f} | {(r.size_bytes or 0) / 1e6:.1f} | {parity} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text("\n".join(lines) + "\n")
    (args.out / "report.json").write_text(json.dumps({
        "schema": "rtdetr-export/select-latency", "preset": args.preset, "machine": machine, "settings": vars(args) |
        {"out": str(args.out)}, "load_average_start": load_before, "load_average_end": load_average(),
        "rows": [r.to_json() for r in rows]}, indent=2, default=str) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
