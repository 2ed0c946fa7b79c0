#!/usr/bin/env python3
"""Summarise a precision bench (benchmarks/run_cpu_precision.sh): per row, p50, the paired ratio to ONNX Runtime
FP32 of our export (same interleaved rounds), the judged parity and the load the machine was under.

    python benchmarks/precision_summary.py REPORT_FOLDER/report.json > REPORT_FOLDER/summary.md
"""

from __future__ import annotations

import argparse
import json
import sys

from rtdetr_export.bench.parity import headline
from rtdetr_export.stats import paired_speedup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report")
    report = json.loads(open(parser.parse_args(argv).report).read())
    targets = {t["name"]: t for t in report["targets"]}
    ok = [r for r in report["results"] if r.get("status") == "ok" and r["batch"] == 1]
    base = next((r for r in ok if targets[r["target"]]["backend"] == "onnxruntime"
                 and targets[r["target"]]["precision"] == "fp32"), None)
    if base is None:
        print("no ONNX Runtime FP32 row at batch 1 to compare with", file=sys.stderr)
        return 1
    timing, settings = report["timing"], report["settings"]
    lines = [f"# Lower precision on CPU ({report['model']['method']} sampler, {report['machine'].get('cpu', {}).get('model', 'CPU')})",
             "", f"{report.get('note') or ''}", "",
             f"Batch 1, {settings.get('threads')} threads, {settings['rounds'].get('1', settings['rounds'].get(1))} "
             f"interleaved rounds; load average {timing['load_average_start']} -> {timing['load_average_end']}. "
             "Ratio: median over rounds of (ORT FP32 / row), samples of one round paired.", "",
             "| row | runtime | hint | precision | p50 ms | vs ORT FP32 (paired) | parity | judged by |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in ok:
        t = targets[r["target"]]
        parity = r.get("parity") or {}
        verdict = {True: "pass", False: "FAIL", None: "-"}[parity.get("passed")]
        lines.append(f"| {r['target']} | {t['backend']} | {t.get('precision_hint', '-')} | {t['precision']} | "
                     f"{r['latency_ms']['p50']:.0f} | {paired_speedup(base['samples_ms'], r['samples_ms']):.2f}x | "
                     f"{verdict}: {headline(parity)} | {parity.get('limits', '-')} |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
