#!/usr/bin/env python3
"""Interleaved A/B latency of two (or more) ONNX files on ONNX Runtime CPU, identical session settings.

Used for the "history" of benchmarks/README.md: each performance change is exported before and after and
timed here in the same process, one call per file per round with the order rotated, so load from elsewhere
hits both alike. Prints per-file p50/min and the median per-round ratio (first file / each other file).

    python benchmarks/ab_onnx.py before.onnx after.onnx [--iters 30] [--batch 1] [--threads N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from rtdetr_export.backends import OnnxRuntimeRunner
from rtdetr_export.bench.machine import load_average
from rtdetr_export.stats import paired_speedup, summarize
from rtdetr_export.bench.timing import Rounds, interleaved
from rtdetr_export.imaging.inputs import synthetic_images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    runners = {str(p): OnnxRuntimeRunner(p, threads=args.threads) for p in args.files}
    feed = {"images": synthetic_images(args.batch, (args.size, args.size), seed=3)}
    outputs = {}
    for name, runner in runners.items():
        runner.activate()
        outputs[name] = runner.infer(feed)
        for _ in range(args.warmup):
            runner.infer(feed)
    first = str(args.files[0])
    load_start = load_average()
    samples = interleaved(runners, feed, Rounds(args.iters))
    result = {"batch": args.batch, "iters": args.iters, "threads": args.threads, "load_average_start": load_start,
              "load_average_end": load_average(), "files": {}}
    for name, values in samples.items():
        stats = summarize(values)
        diff = max(float(np.abs(outputs[first][k] - outputs[name][k]).max()) for k in outputs[first])
        ratio = paired_speedup(samples[first], values)
        result["files"][name] = {"latency_ms": stats, "paired_speedup_vs_first": ratio, "max_abs_diff_vs_first": diff}
        print(f"{name}: p50 {stats['p50']:.1f} ms, min {stats['min']:.1f} ms, mean {stats['mean']:.1f} ms; "
              f"{first} / this (paired median) {ratio:.3f}x; max |diff| vs first {diff:.2g}")
    print(f"load average {result['load_average_start']} -> {result['load_average_end']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
