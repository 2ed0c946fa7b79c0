#!/usr/bin/env python3
"""Rewrite the index of benchmark reports in benchmarks/README.md from benchmarks/results/*/*/*/report.json.

The table sits between the ``reports:begin`` / ``reports:end`` markers; everything else in the README is
left alone. Run by run_cpu.sh and run_gpu.sh after they write reports.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
BEGIN, END = "<!-- reports:begin -->", "<!-- reports:end -->"


def _ratio(report: dict, backend: str, batch: int) -> str:
    for c in report.get("peer_comparison", []):
        if c["backend"] == backend and c["batch"] == batch and c["precision"] == "fp32":
            same = c.get("both_match_reference", True)
            return f"{c['speedup_paired']:.2f}x" if same else "not comparable (outputs differ)"
    return "-"


def rows() -> list[str]:
    out = []
    for path in sorted((HERE / "results").glob("*/*/*/report.json")):
        if "portability" in path.parts:
            continue
        report = json.loads(path.read_text())
        s, m, model = report["settings"], report["machine"], report["model"]
        where = m["cpu"]["model"] if s["device"] == "cpu" else (m.get("gpu") or {}).get("name", "?")
        note = report.get("note") or ""
        rel = path.parent.relative_to(HERE)
        out.append(f"| [{rel}]({rel}/report.md) | {where} | {s['device']} | {model['method']} | "
                   f"{', '.join(map(str, s['batches']))} | {_ratio(report, 'onnxruntime', 1)} | "
                   f"{_ratio(report, 'onnxruntime', 4)} | {note} |")
    return out


def main() -> int:
    table = ["| report | machine | device | method | batch | ours vs peer, ORT b1 (paired) | b4 | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows()]
    text = README.read_text()
    if BEGIN not in text or END not in text:
        print(f"{README} has no {BEGIN} ... {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    README.write_text(head + BEGIN + "\n" + "\n".join(table) + "\n" + END + tail)
    return 0


if __name__ == "__main__":
    sys.exit(main())
