"""latency_vs_ap.png: every measured candidate as a point (batch-1 p50 latency, AP), the Pareto front joined, the
budget's AP floor drawn, the choice ringed."""

from __future__ import annotations

from pathlib import Path
from rtdetr_export.errors import MissingDependencyError
from rtdetr_export.files import atomic_output
from rtdetr_export.select.report import SelectReport

BACKEND_COLOURS = {"onnxruntime": "#1f77b4", "openvino": "#2ca02c"}


def plot_latency_vs_ap(report: SelectReport, path: str | Path) -> Path:
    """The scatter; returns the written path."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed, and never a window on a server
        from matplotlib import pyplot as plt
    except ImportError:
        raise MissingDependencyError("the latency-vs-AP plot needs matplotlib: pip install matplotlib") from None
    rows = [r for r in report.rows if r.measured]
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, r in enumerate(sorted(rows, key=lambda r: (r.ap, r.p50(1)))):
        ax.scatter(r.p50(1), r.ap, s=45, color=BACKEND_COLOURS.get(r.backend, "#7f7f7f"),
                   marker="o" if r.trusted else "x", edgecolors="#d62728" if r.on_front else "none", linewidths=1.5,
                   zorder=3)
        # Rows of one file often share an AP: alternate the label above and below so neighbours stay legible.
        ax.annotate(r.name, (r.p50(1), r.ap), xytext=(6, 5 if i % 2 == 0 else -11), textcoords="offset points",
                    fontsize=8)
    front = sorted((r for r in rows if r.on_front), key=lambda r: r.p50(1))
    if front:
        ax.step([r.p50(1) for r in front], [r.ap for r in front], where="post", color="#d62728", alpha=0.6,
                label="Pareto front (red ring)")
    chosen = report.row(report.chosen)
    if chosen is not None and chosen.measured:
        ax.scatter(chosen.p50(1), chosen.ap, s=220, facecolors="none", edgecolors="black", linewidths=1.5,
                   zorder=4, label=f"chosen: {chosen.name}")
    if report.baseline_ap is not None:
        ax.axhline(report.baseline_ap - report.max_ap_drop, color="#7f7f7f", linestyle="--", linewidth=1,
                   label=f"AP floor ({report.baseline} - {report.max_ap_drop:g})")
    ax.set_xlabel("model-only latency, batch 1, p50 (ms, lower is better)")
    ax.set_ylabel("COCO AP (higher is better)")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False)
    ax.set_title(f"{report.machine.get('cpu', {}).get('model', '')}: ONNX Runtime (blue), OpenVINO (green)",
                 fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
