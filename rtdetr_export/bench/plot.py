"""latency.png: the distribution of model-only latency per backend, one panel per batch size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rtdetr_export.errors import MissingDependencyError

ROLE_COLOURS = {"reference": "#7f7f7f", "ours": "#1f77b4", "peer": "#ff7f0e"}


def _horizontal(version: str) -> dict[str, Any]:
    # matplotlib 3.10 replaced boxplot's vert=False by orientation="horizontal" (vert warns from 3.11 on).
    major, minor = (int(v) for v in version.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def plot_latency(report: dict[str, Any], path: str | Path) -> Path:
    """Box plots of every measured sample (dots on top), median labelled; returns the written path."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed, and never a window on a server
        from matplotlib import pyplot as plt
    except ImportError:
        raise MissingDependencyError("the latency plot needs matplotlib: pip install matplotlib") from None
    roles = {t["name"]: t["role"] for t in report["targets"]}
    batches = [b for b in report["settings"]["batches"]
               if any(r["batch"] == b and r.get("status") == "ok" for r in report["results"])]
    rows_per_panel = max((sum(1 for r in report["results"] if r["batch"] == b and r.get("status") == "ok")
                          for b in batches), default=1)
    fig, axes = plt.subplots(len(batches) or 1, 1, squeeze=False,
                             figsize=(9, 0.9 + (0.55 * rows_per_panel + 0.9) * max(len(batches), 1)))
    rng = np.random.default_rng(0)
    for ax, batch in zip(axes[:, 0], batches):
        rows = [r for r in report["results"] if r["batch"] == batch and r.get("status") == "ok"]
        data = [r["samples_ms"] for r in rows]
        labels = [r["target"] for r in rows]
        positions = np.arange(len(rows))[::-1]
        boxes = ax.boxplot(data, positions=positions, widths=0.6, patch_artist=True, showfliers=False,
                           medianprops={"color": "black"}, **_horizontal(matplotlib.__version__))
        for patch, label in zip(boxes["boxes"], labels):
            patch.set_facecolor(ROLE_COLOURS.get(roles.get(label, "ours"), "#1f77b4"))
            patch.set_alpha(0.35)
        for pos, samples, label in zip(positions, data, labels):
            jitter = rng.uniform(-0.18, 0.18, size=len(samples))
            ax.scatter(samples, pos + jitter, s=8, color=ROLE_COLOURS.get(roles.get(label, "ours")), zorder=3)
            ax.annotate(f"p50 {np.median(samples):.1f} ms", (max(samples), pos), xytext=(6, -3),
                        textcoords="offset points", fontsize=8)
        ax.set_yticks(positions, labels, fontsize=8)
        ax.set_xlabel("model-only latency per call (ms, lower is better)")
        ax.set_title(f"batch {batch}", fontsize=10, loc="left")
        ax.set_xlim(left=0, right=max(max(s) for s in data) * 1.25)
        ax.grid(axis="x", alpha=0.3)
    model, machine = report["model"], report["machine"]
    where = machine["cpu"]["model"] if report["settings"]["device"] == "cpu" else (machine["gpu"] or {}).get("name")
    title = f"RT-DETRv2 {model['method']} {model['input_size'][0]}x{model['input_size'][1]} on {where}"
    if report.get("note"):
        title += f"\n{report['note']}"
    fig.suptitle(title, fontsize=10)
    from matplotlib.patches import Patch

    legend = [Patch(color=c, alpha=0.5, label=label) for label, c in
              (("PyTorch eager FP32 (baseline)", ROLE_COLOURS["reference"]), ("ours", ROLE_COLOURS["ours"]),
               ("peer path (transformers)", ROLE_COLOURS["peer"]))]
    fig.legend(handles=legend, fontsize=7, loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.035, 1, 1))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
