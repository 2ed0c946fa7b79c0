"""Parity of a benchmarked runner's outputs against the PyTorch FP32 reference, with verification's rules."""

from __future__ import annotations

from typing import Any

import numpy as np

from rtdetr_export.verify.agreement import AgreementThresholds, compare_agreement
from rtdetr_export.verify.compare import PRECISION_THRESHOLDS
from rtdetr_export.verify.reference import ReferenceRunner
from rtdetr_export.verify.verification import compare_outputs


def parity(head: str, feed: dict[str, np.ndarray], reference: dict[str, np.ndarray],
           outputs: dict[str, np.ndarray], precision: str, runner: ReferenceRunner | None = None) -> dict[str, Any]:
    """``outputs`` against ``reference`` as verification judges ``precision``: FP32 by tensor differences
    (compare_outputs, which re-runs ``runner`` to confirm rounding flips), FP16 and INT8 by detection
    agreement (compare_agreement).

    A precision with no limits defined gets the FP32 numbers and no verdict (``passed`` None).
    """
    thresholds = PRECISION_THRESHOLDS.get(precision)
    judged = thresholds is not None
    thresholds = thresholds or PRECISION_THRESHOLDS["fp32"]
    if isinstance(thresholds, AgreementThresholds):
        run = compare_agreement(reference, outputs, head, thresholds)
    else:
        run = compare_outputs(head, feed, reference, outputs, thresholds, runner)
    report = run.as_dict()
    report["limits"] = precision if judged else f"none for {precision} (numbers only, thresholds shown are fp32)"
    if not judged:
        report["passed"] = None
    return report


def headline(report: dict[str, Any]) -> str:
    """The parity report in a few words: the largest error, or the agreement figures for FP16/INT8."""
    outputs = report.get("outputs", {})
    if "matched" in outputs:
        return (f"matched {outputs['matched']['agreement']:.3f}, labels {outputs['labels']['agreement']:.3f}, "
                f"mean IoU {outputs['boxes']['mean_iou']:.3f}, max score diff {outputs['scores']['max_abs']:.3g}")
    worst: tuple[str, float] | None = None
    for name, entry in outputs.items():
        for key in ("max_abs", "max_abs_px"):
            if key in entry and (worst is None or entry[key] > worst[1]):
                worst = (f"{name} {key}", float(entry[key]))
    return f"{worst[0]} {worst[1]:.3g}" if worst else "-"
