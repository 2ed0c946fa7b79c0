"""select's report folder: report.json, report.md, report.csv and latency_vs_ap.png (the kinds of file bench writes)."""

from __future__ import annotations

import json
from pathlib import Path

from rtdetr_export.files import write_report_files
from rtdetr_export.select.plot import plot_latency_vs_ap
from rtdetr_export.select.report import SelectReport, render_csv, select_markdown

FILES = ("report.json", "report.md", "report.csv", "latency_vs_ap.png")


def write_select_report(report: SelectReport, folder: str | Path, force: bool = False) -> list[Path]:
    """report.json/md/csv and latency_vs_ap.png in ``folder``; refuses to replace a report without ``force``."""
    texts = {"report.json": json.dumps(report.to_json(), indent=2) + "\n", "report.md": select_markdown(report),
             "report.csv": render_csv(report)}
    written = write_report_files(folder, texts, force)
    written.append(plot_latency_vs_ap(report, Path(folder) / "latency_vs_ap.png"))
    return written
