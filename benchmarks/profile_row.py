#!/usr/bin/env python3
"""Where a bench row's time goes: per-layer profiles of ONNX Runtime FP32 and of the fastest OpenVINO rows.

    python3 benchmarks/profile_row.py --preset r18vd --method discrete --calib-images DIR \\
        --out benchmarks/results/profile/MACHINE/DATE/r18vd_discrete

Makes the files `select` compares (FP32 and --int8-target cpu ONNX, the NNCF INT8 IR of the FP32 file; not
verified: random weights), times the OpenVINO rows and ONNX Runtime FP32 in one interleaved run (bench's loop and
pause) to find the fastest OpenVINO row, then profiles ONNX Runtime FP32, that row and any OpenVINO row within
--tie of it (on a shared machine two rows 5 % apart are one speed; bench/profile.py:
OpenVINO's PERF_COUNT counters, ONNX Runtime's profiler), each summarized by model part (with the FLOPs of each
part, counted once from the FP32 graph), op type and kernel. Writes profile.json (every node) and profile.md.

A script and not a `bench --profile` flag: the counters slow every node they time, so a profiled call is not a
latency bench may report, and the question (where does the time go) is asked of one or two rows, not of a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rtdetr_export.artifact import PrecisionOptions, make_feed, open_artifact
from rtdetr_export.backends import OnnxRuntimeRunner
from rtdetr_export.backends.openvino_runner import OpenVinoRunner
from rtdetr_export.bench.flops import node_flops
from rtdetr_export.bench.machine import load_average, machine_info
from rtdetr_export.bench.profile import (OnnxRuntimeProfiler, OpenVinoProfiler, group_flops, profile_interleaved,
                                         profile_markdown)
from rtdetr_export.bench.roofline import graph_input_shapes
from rtdetr_export.bench.timing import Rounds, interleaved
from rtdetr_export.imaging import list_images, load_image, preprocess_batch
from rtdetr_export.pipeline.openvino import cpu_facts
from rtdetr_export.select import BuildContext, export_recipe, openvino_int8_recipe
from rtdetr_export.stats import paired_speedup, summarize
from rtdetr_export.weights import load_model

FP32 = export_recipe("fp32", "FP32 ONNX (not verified)", lambda c: PrecisionOptions(), verify=False)
RECIPES = {
    "fp32": FP32,
    "int8_cpu": export_recipe("int8_cpu", "INT8 ONNX, --int8-target cpu (not verified)", lambda c: PrecisionOptions(
        "int8", c.calib_images, c.calib_count, int8_target="cpu"), verify=False),
    "nncf_int8": openvino_int8_recipe("nncf_int8", "INT8 OpenVINO IR, NNCF rtdetr recipe (not verified)", FP32,
                                      verify=False),
}
# row -> (runtime, file, OpenVINO hint)
F32_ROWS = {"ort:fp32": ("onnxruntime", "fp32", None), "ov-f32:fp32": ("openvino", "fp32", "f32"),
            "ov-f32:int8_cpu": ("openvino", "int8_cpu", "f32"), "ov-f32:nncf_int8": ("openvino", "nncf_int8", "f32")}
# Where the CPU computes bf16 natively (AVX-512 BF16 or AMX), the bf16 hint's rows too: select's fastest row there.
BF16_ROWS = {"ov-bf16:fp32": ("openvino", "fp32", "bf16"), "ov-bf16:int8_cpu": ("openvino", "int8_cpu", "bf16"),
             "ov-bf16:nncf_int8": ("openvino", "nncf_int8", "bf16")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="r18vd")
    parser.add_argument("--model", default=None, help="a trained model's folder instead of the preset's seeded "
                        "weights (e.g. tests/data/fixture/rtdetrv2_shapes)")
    parser.add_argument("--method", default="discrete")
    parser.add_argument("--calib-images", required=True)
    parser.add_argument("--calib-count", type=int, default=16)
    parser.add_argument("--image", default=None, help="the image fed (default: the first of --calib-images)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10, help="interleaved rounds that pick the fastest row")
    parser.add_argument("--runs", type=int, default=10, help="profiled calls per row")
    parser.add_argument("--tie", type=float, default=0.1, help="OpenVINO rows this close to the fastest's p50 "
                        "are profiled too (0.1: within 10 %%)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--work", type=Path, required=True, help="where the files are made (reused when present)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    load_before = load_average()
    model = load_model(args.model, method=args.method) if args.model else load_model(preset=args.preset,
                                                                                     method=args.method)
    args.work.mkdir(parents=True, exist_ok=True)
    context = BuildContext(model, args.work, args.calib_images, args.calib_count, None, log)
    files = {}
    for name, recipe in RECIPES.items():
        made = args.work / f"{name}{recipe.suffix}"
        if not made.exists():
            log(f"making {name} ({recipe.description})")
            made = recipe.make(context)
        files[name] = made
    ROWS = F32_ROWS | (BF16_ROWS if cpu_facts()[1] else {})
    record = open_artifact(files["fp32"])
    picture = load_image(args.image or list_images(args.calib_images)[0])
    feed = make_feed(record.head, preprocess_batch([picture], tuple(model.config.image_size)),
                     [(picture.height, picture.width)])
    runners = {row: OnnxRuntimeRunner(files[f], threads=args.threads) if backend == "onnxruntime" else
               OpenVinoRunner(files[f], hint, args.threads) for row, (backend, f, hint) in ROWS.items()}
    for runner in runners.values():
        runner.activate()
        for _ in range(args.warmup):
            runner.infer(feed)
    log(f"timing {', '.join(runners)} in {args.iters} interleaved rounds")
    samples = interleaved(runners, feed, Rounds(args.iters))
    for runner in runners.values():
        runner.deactivate()
    timing = {row: {**summarize(values), "paired_vs_ort_fp32": paired_speedup(samples["ort:fp32"], values)}
              for row, values in samples.items()}
    fastest = min((row for row in ROWS if row.startswith("ov-")), key=lambda row: timing[row]["p50"])
    profiled = ["ort:fp32"] + sorted((row for row in ROWS if row.startswith("ov-") and timing[row]["p50"] <=
                                      timing[fastest]["p50"] * (1 + args.tie)), key=lambda row: timing[row]["p50"])
    load_timed = load_average()
    log(f"fastest OpenVINO row: {fastest}; profiling {', '.join(profiled)}, {args.runs} calls each")
    # The profiled rows take turns, as the timed rows did, so their profiles meet the same load.
    profiles = profile_interleaved([OnnxRuntimeProfiler(files["fp32"], feed, args.threads, args.warmup, row)
                                    if row == "ort:fp32" else
                                    OpenVinoProfiler(files[ROWS[row][1]], feed, ROWS[row][2], args.threads,
                                                     args.warmup, row)
                                    for row in profiled], args.runs, Rounds.settle_ms)
    size = tuple(model.config.image_size)
    import onnx

    flops = group_flops(node_flops(files["fp32"], graph_input_shapes(onnx.load(str(files["fp32"])), 1, size)))
    load_after = load_average()
    machine = machine_info()
    what = f"{args.model} ({args.method or 'its'} sampler)" if args.model else \
        f"{args.preset} {args.method} (seeded random weights)"
    lines = [f"# Per-layer profile: {what}, batch 1", "",
             f"{machine['cpu']['model']}, {args.threads} threads. Load average {load_before} at the start, "
             f"{load_timed} after the timing, {load_after} at the end.", "",
             f"Interleaved timing without profiling ({args.iters} rounds, {Rounds.settle_ms:g} ms pause before each "
             "call), to pick the fastest OpenVINO row:", "",
             "| row | p50 ms | min ms | paired vs ort:fp32 |", "| --- | --- | --- | --- |"]
    lines += [f"| {row}{' (profiled)' if row in profiled else ''} | {t['p50']:.1f} | {t['min']:.1f} | "
              f"{t['paired_vs_ort_fp32']:.2f}x |" for row, t in timing.items()]
    lines += ["", f"FLOPs per part counted once from the FP32 graph (bench/flops.py's convention: Conv/MatMul/Gemm "
              f"multiply-adds x 2), {sum(flops.values()) / 1e9:.1f} GFLOP per image.", "",
              profile_markdown(profiles, flops)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "profile.md").write_text("\n".join(lines) + "\n")
    (args.out / "profile.json").write_text(json.dumps({
        "schema": "rtdetr-export/profile", "preset": args.preset, "method": args.method, "machine": machine,
        "settings": {k: str(v) for k, v in vars(args).items()}, "load_average": {
            "start": load_before, "after_timing": load_timed, "end": load_after},
        "timing_ms": timing, "fastest_openvino_row": fastest, "profiled": profiled, "flops_per_group": flops,
        "profiles": [p.to_json() for p in profiles]}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
