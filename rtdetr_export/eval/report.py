"""eval's report folder: report.json, report.md, report.csv and pr_curves.png (like bench's)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from rtdetr_export.errors import MissingDependencyError
from rtdetr_export.eval.evaluate import EvalReport
from rtdetr_export.eval.metrics import STAT_NAMES
from rtdetr_export.files import atomic_output, write_report_files

HEADLINE = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR100")


def _signed(value: float | None) -> str:
    return "" if value is None else f"{value:+.4f}"


def eval_markdown(report: EvalReport) -> str:
    """The table a person reads: one row per detector, its metrics and its difference to the reference."""
    data = report.dataset
    lines = [f"# COCO accuracy: {data['images']} images of {data['annotations']}", ""]
    lines.append("| detector | precision | " + " | ".join(HEADLINE) + " | AP vs reference |")
    lines.append("| --- | --- | " + " | ".join("---" for _ in HEADLINE) + " | --- |")
    for row in report.rows:
        cells = [f"{row.metrics.stats[name]:.4f}" for name in HEADLINE]
        delta = "(reference)" if row.source == "reference" else _signed((row.delta or {}).get("AP"))
        lines.append(f"| {row.name} | {row.precision} | " + " | ".join(cells) + f" | {delta} |")
    lines += ["", "Per-class AP (0.50:0.95):", ""]
    classes = list(report.rows[0].metrics.per_class)
    lines.append("| detector | " + " | ".join(classes) + " |")
    lines.append("| --- | " + " | ".join("---" for _ in classes) + " |")
    for row in report.rows:
        lines.append(f"| {row.name} | " + " | ".join(f"{row.metrics.per_class[c]:.4f}" for c in classes) + " |")
    if report.skipped:
        lines += ["", f"{len(report.skipped)} annotated image(s) missing, skipped: "
                  + ", ".join(Path(p).name for p in report.skipped[:10]) + (" ..." if len(report.skipped) > 10 else "")]
    return "\n".join(lines) + "\n"


def render_csv(report: EvalReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "source", "precision", "runtime", *STAT_NAMES, *(f"delta_{n}" for n in STAT_NAMES)])
    for row in report.rows:
        writer.writerow([row.name, row.source, row.precision, row.runtime, *(row.metrics.stats[n] for n in STAT_NAMES),
                         *((row.delta or {}).get(n) for n in STAT_NAMES)])
    return buffer.getvalue()


def plot_pr_curves(report: EvalReport, path: Path) -> Path:
    """Precision-recall curves (mean over classes) at IoU 0.50 and averaged over 0.50:0.95, one line per row."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ImportError:
        raise MissingDependencyError("the PR plot needs matplotlib: pip install matplotlib") from None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, attr, title in ((axes[0], "precision_50", "IoU 0.50"), (axes[1], "precision_avg", "IoU 0.50:0.95")):
        for row in report.rows:
            curve = getattr(row.metrics, attr)
            if curve:
                ax.plot(row.metrics.recall, curve, label=f"{row.name} (AP {row.metrics.stats['AP']:.3f})")
        ax.set_title(f"precision-recall, {title}")
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("precision (mean over classes)")
    axes[1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def write_eval_report(report: EvalReport, folder: str | Path, force: bool = False) -> list[Path]:
    """report.json/md/csv and pr_curves.png in ``folder``; refuses to replace a report without ``force``."""
    texts = {"report.json": json.dumps(report.to_json(), indent=2) + "\n", "report.md": eval_markdown(report),
             "report.csv": render_csv(report)}
    written = write_report_files(folder, texts, force)
    written.append(plot_pr_curves(report, Path(folder) / "pr_curves.png"))
    return written
