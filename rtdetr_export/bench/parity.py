"""Parity of a benchmarked runner's outputs against the PyTorch FP32 reference, with verification's rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rtdetr_export.verify import PRECISION_THRESHOLDS, AgreementThresholds, compare_agreement, compare_outputs
from rtdetr_export.verify.reference import ReferenceRunner
from rtdetr_export.artifact.verification import BatchComparison


@dataclass
class Parity:
    """One bench row's outputs judged against the reference. ``judged`` is False for a precision that has no
    limits: the FP32 numbers are reported and ``passed`` is None."""

    comparison: BatchComparison
    limits: str
    judged: bool = True

    @property
    def passed(self) -> bool | None:
        return self.comparison.passed if self.judged else None

    def to_json(self) -> dict[str, Any]:
        return {**self.comparison.to_json(), "limits": self.limits, "passed": self.passed}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Parity":
        comparison = BatchComparison.from_json(data)
        return cls(comparison, data.get("limits", ""), data.get("passed") is not None)

    def headline(self) -> str:
        """The parity in a few words: the agreement figures, or the worst error."""
        checks = self.comparison.outputs
        if self.comparison.kind == "agreement":
            return (f"matched {checks['matched'].value:.3f}, labels {checks['labels'].value:.3f}, "
                    f"mean IoU {checks['boxes'].value:.3f}, mean score diff {checks['scores'].value:.3g}")
        errors = [(name, check) for name, check in checks.items() if not check.higher_is_better]
        if not errors:
            return "-"
        name, worst = max(errors, key=lambda item: item[1].value)
        return f"{name} {worst.metric} {worst.value:.3g}"


def parity(head: str, feed: dict[str, np.ndarray], reference: dict[str, np.ndarray],
           outputs: dict[str, np.ndarray], precision: str, runner: ReferenceRunner | None = None) -> Parity:
    """``outputs`` against ``reference`` as verification judges ``precision``: FP32 by tensor differences
    (compare_outputs, which re-runs ``runner`` to confirm rounding flips), FP16 and INT8 by detection
    agreement (compare_agreement)."""
    thresholds = PRECISION_THRESHOLDS.get(precision)
    judged = thresholds is not None
    thresholds = thresholds or PRECISION_THRESHOLDS["fp32"]
    if isinstance(thresholds, AgreementThresholds):
        run = compare_agreement(reference, outputs, head, thresholds)
    else:
        run = compare_outputs(head, feed, reference, outputs, thresholds, runner)
    limits = precision if judged else f"none for {precision} (numbers only, thresholds shown are fp32)"
    return Parity(run, limits, judged)


def headline(report: dict[str, Any]) -> str:
    """The headline of a parity entry read back from a report's JSON."""
    return Parity.from_json(report).headline() if report.get("outputs") else "-"
