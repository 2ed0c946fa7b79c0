"""Write a report folder: report.json (everything), report.md, report.csv and latency.png."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from rtdetr_export.bench.markdown import bench_markdown
from rtdetr_export.bench.parity import Parity
from rtdetr_export.bench.roofline import Roofline
from rtdetr_export.files import write_report_files

FILES = ("report.json", "report.md", "report.csv", "latency.png")
CSV_STATS = ("min", "mean", "p50", "p90", "p99", "max", "std", "n")


def csv_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per target x batch (skipped and failed rows included, with their reason)."""
    targets = {t["name"]: t for t in report["targets"]}
    rows = []
    for r in report["results"]:
        t = targets.get(r["target"], {})
        row: dict[str, Any] = {"target": r["target"], "backend": t.get("backend"), "precision": t.get("precision"),
                               "device": t.get("device"), "role": t.get("role"), "batch": r["batch"],
                               "status": r["status"], "reason": r.get("reason", "")}
        latency = r.get("latency_ms") or {}
        e2e = r.get("e2e_ms") or {}
        for key in CSV_STATS:
            row[f"latency_{key}_ms" if key != "n" else "iterations"] = latency.get(key)
        row["throughput_ips"] = r.get("throughput_ips")
        for key in ("p50", "mean", "min", "max"):
            row[f"e2e_{key}_ms"] = e2e.get(key)
        row["e2e_throughput_ips"] = r.get("e2e_throughput_ips")
        for stage, stats in (r.get("stages_ms") or {}).items():  # a split artifact's graph 1, host step, graph 2
            row[f"{stage}_p50_ms"] = stats["p50"]
        row["cold_ms"] = r.get("cold_ms")
        row["peak_memory_mb"] = (r.get("memory") or {}).get("peak_mb")
        row["memory_kind"] = (r.get("memory") or {}).get("kind")
        row["speedup_vs_torch_p50"] = (r.get("speedup_vs_torch") or {}).get("p50")
        roofline = Roofline.from_json(r["roofline"]) if r.get("roofline") else None
        row["achieved_gflops"] = roofline.achieved_gflops if roofline else None
        row["peak_precision"] = roofline.peak_precision if roofline else None
        row["peak_gflops"] = roofline.peak_gflops if roofline else None
        row["fraction_of_peak"] = roofline.fraction if roofline else None
        row["flops_per_image"] = roofline.flops_per_image if roofline else None
        if r.get("parity"):
            parity = Parity.from_json(r["parity"])
            row["parity_passed"] = parity.passed
            for name, check in parity.comparison.outputs.items():
                row[f"parity_{name}_{check.metric}"] = check.value
        else:
            row["parity_passed"] = None
        rows.append(row)
    return rows


def render_csv(report: dict[str, Any]) -> str:
    rows = csv_rows(report)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_report(report: dict[str, Any], folder: str | Path, force: bool = False) -> list[Path]:
    """Write the report files into ``folder`` (created if needed); refuses to replace a report without force."""
    texts = {"report.json": json.dumps(report, indent=2) + "\n", "report.md": bench_markdown(report),
             "report.csv": render_csv(report)}
    written = write_report_files(folder, texts, force)
    from rtdetr_export.bench.plot import plot_latency

    png = plot_latency(report, Path(folder) / "latency.png")
    if png is not None:
        written.append(png)
    return written
