#!/usr/bin/env python3
"""Rewrite the index of benchmark reports in benchmarks/README.md from benchmarks/results/*/*/*/report.json,
and the headline table in the top-level README.md from the newest reports that are not drafts.

Each table sits between its ``begin`` / ``end`` markers; everything else in the READMEs is left alone. Run by
run_cpu.sh and run_gpu.sh after they write reports.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from rtdetr_export.stats import paired_speedup

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
TOP_README = HERE.parent / "README.md"
BEGIN, END = "<!-- reports:begin -->", "<!-- reports:end -->"
HEAD_BEGIN, HEAD_END = "<!-- headline:begin -->", "<!-- headline:end -->"
MODEL_REPORT = re.compile(r"[a-z0-9]+_(default|discrete)")


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


def _p50(report: dict, batch: int, match) -> str:
    for r in report["results"]:
        if r["batch"] == batch and r.get("status") == "ok" and match(r["target"]):
            verdict = "" if r["parity"]["passed"] is not False else " (parity FAIL)"
            return f"{r['latency_ms']['p50']:.0f} ms{verdict}"
    return "-"


def _model_reports(folder: Path) -> list[Path]:
    """run_cpu.sh's reports in a date folder (one per preset x sampler, named PRESET_METHOD); the other
    benches that share a date folder (precision_*, samplers_*, ...) have their own pages."""
    return sorted(p for p in folder.glob("*/report.json") if MODEL_REPORT.fullmatch(p.parent.name))


def _int8(report: dict, batch: int) -> str:
    """p50 of our INT8 row, and its paired speed-up over our FP32 row of the same rounds."""
    rows = {("int8" if r["target"].endswith("int8.onnx") else "fp32"): r for r in report["results"]
            if r["batch"] == batch and r.get("status") == "ok" and r["target"].startswith("onnxruntime")
            and r["target"].endswith(("fp32.onnx", "int8.onnx"))}
    if "int8" not in rows:
        return "-"
    cell = _p50(report, batch, lambda t: t == rows["int8"]["target"])
    if "fp32" in rows:
        cell += f", {paired_speedup(rows['fp32']['samples_ms'], rows['int8']['samples_ms']):.2f}x FP32"
    return cell


def headline() -> list[str]:
    """One row per preset x method of the newest non-draft CPU date folder."""
    folders = sorted(p for p in (HERE / "results").glob("*/*") if p.is_dir() and not p.parent.name.startswith(
        ("draft", "portability")) and _model_reports(p))
    if not folders:
        return ["No non-draft report yet."]
    newest = max(folders, key=lambda p: p.name)
    out = [f"ONNX Runtime and PyTorch on CPU, p50 latency, from [{newest.relative_to(HERE.parent)}]"
           f"({newest.relative_to(HERE.parent)}) (seeded random weights; every row's parity against PyTorch is in "
           "its report):", "",
           "| model | sampler | ORT FP32 b1 | ORT FP32 b4 | peer ORT b1 | ours vs peer b1 / b4 (paired) | ORT INT8 "
           "(cpu target) b1, paired vs FP32 | PyTorch b1 |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for path in _model_reports(newest):
        report = json.loads(path.read_text())
        preset = path.parent.name.rsplit("_", 1)[0]
        ours = lambda t: t.startswith("onnxruntime") and t.endswith("fp32.onnx")  # noqa: E731
        out.append(f"| {preset} | {report['model']['method']} | {_p50(report, 1, ours)} | {_p50(report, 4, ours)} | "
                   f"{_p50(report, 1, lambda t: t == 'onnxruntime-cpu:peer')} | "
                   f"{_ratio(report, 'onnxruntime', 1)} / {_ratio(report, 'onnxruntime', 4)} | "
                   f"{_int8(report, 1)} | "
                   f"{_p50(report, 1, lambda t: t == 'torch-fp32-cpu')} |")
    return out


def _replace(path: Path, begin: str, end: str, lines: list[str]) -> bool:
    text = path.read_text()
    if begin not in text or end not in text:
        print(f"{path} has no {begin} ... {end} markers", file=sys.stderr)
        return False
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    path.write_text(head + begin + "\n" + "\n".join(lines) + "\n" + end + tail)
    return True


def main() -> int:
    table = ["| report | machine | device | method | batch | ours vs peer, ORT b1 (paired) | b4 | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows()]
    ok = _replace(README, BEGIN, END, table)
    ok = _replace(TOP_README, HEAD_BEGIN, HEAD_END, headline()) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
