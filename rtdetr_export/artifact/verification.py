"""The verification record, typed: the results of comparing two runners: one ``Check`` per output, a ``BatchComparison`` per batch of inputs,
a ``Verification`` over all of them, and the ``VerificationInputs`` that judged it. Each serialises itself (``to_json``) and reads itself back (``from_json``),
also from the version-1 sidecars written before the judged metric was recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Metrics where more is better; every other metric is an error that must stay at or below its threshold.
HIGHER_IS_BETTER = ("agreement", "mean_iou", "min_iou")


@dataclass
class Check:
    """One output judged by one metric against one threshold; ``stats`` are other numbers kept for the record."""

    metric: str
    value: float
    threshold: float
    passed: bool
    stats: dict[str, float] = field(default_factory=dict)

    @classmethod
    def judge(cls, metric: str, value: float, threshold: float, **stats: float) -> "Check":
        """A check whose verdict follows from the metric's direction."""
        ok = value >= threshold if metric in HIGHER_IS_BETTER else value <= threshold
        return cls(metric, float(value), float(threshold), bool(ok),
                   {k: v if isinstance(v, int) else float(v) for k, v in stats.items()})

    @property
    def higher_is_better(self) -> bool:
        return self.metric in HIGHER_IS_BETTER

    def worse_than(self, other: "Check") -> bool:
        """Whether this check's value is further on the failing side than ``other``'s."""
        return self.value < other.value if self.higher_is_better else self.value > other.value

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, self.metric: self.value, **self.stats, "threshold": self.threshold,
                "passed": self.passed}

    @classmethod
    def from_json(cls, name: str, entry: dict[str, Any]) -> "Check":
        metric = entry.get("metric") or _version1_metric(name, entry)
        stats = {k: v for k, v in entry.items() if k not in ("metric", metric, "threshold", "passed")
                 and isinstance(v, (int, float)) and not isinstance(v, bool)}
        return cls(metric, float(entry[metric]), float(entry["threshold"]), bool(entry["passed"]), stats)


def _version1_metric(name: str, entry: dict[str, Any]) -> str:
    """The judged metric of a schema-1 output entry, which did not name it."""
    for metric in ("max_abs_unflipped", "max_abs_px", "agreement", "mean_iou", "max_abs"):
        if metric in entry:
            return metric
    raise ValueError(f"output {name!r}: no known metric in {sorted(entry)}")


@dataclass
class BatchComparison:
    """One batch of inputs through two runners. ``kind``: "tensor" (FP32 limits on every output) or
    "agreement" (reduced precision: detection agreement, verify/agreement.py)."""

    batch: int
    kind: str = "tensor"
    outputs: dict[str, Check] = field(default_factory=dict)
    reordered_rows: int = 0
    flipped_rows: int = 0
    failures: list[str] = field(default_factory=list)
    # [N, Q]: how badly each query that a rounding flip may explain fails (0: not suspected); never serialised.
    # verification.compare_outputs tests the suspects and compare.confirm_flips judges the result.
    suspected_flips: np.ndarray | None = field(default=None, repr=False)
    input_size: list[int] | None = None  # [height, width]; recorded only for dynamic-size files
    # Encoder cells the candidate kept instead of the reference's among tied selection scores, the reference re-run
    # with them matching (verify/selection.py); recorded only when not 0.
    reselected_queries: int = 0

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        out = {"batch": self.batch, "kind": self.kind,
               "outputs": {name: check.to_json() for name, check in self.outputs.items()},
               "reordered_rows": self.reordered_rows, "flipped_rows": self.flipped_rows, "passed": self.passed,
               "failures": list(self.failures)}
        if self.input_size is not None:
            out["input_size"] = list(self.input_size)
        if self.reselected_queries:
            out["reselected_queries"] = self.reselected_queries
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BatchComparison":
        outputs = {name: Check.from_json(name, entry) for name, entry in data.get("outputs", {}).items()}
        kind = data.get("kind") or ("agreement" if "matched" in outputs else "tensor")
        return cls(int(data["batch"]), kind, outputs, int(data.get("reordered_rows", 0)),
                   int(data.get("flipped_rows", 0)), list(data.get("failures", [])),
                   input_size=data.get("input_size"), reselected_queries=int(data.get("reselected_queries", 0)))


@dataclass(frozen=True)
class VerificationInputs:
    """What a verification judged on: seeded synthetic scenes (``folder`` None), or a folder of the user's images:
    all of it (``--images``), or the part calibration did not read (``calibration``: how many images, first by file
    name, calibration read; imaging/inputs.py ``calibration_split``). ``total``: images in the folder then;
    ``used``: distinct images judged. The sidecar keeps the sentence ``str()`` gives in ``inputs`` (what people
    read) and these fields in ``input_images`` (what ``verify`` re-judges with later)."""

    folder: str | None = None
    calibration: int | None = None
    total: int = 0
    used: int = 0

    @property
    def synthetic(self) -> bool:
        return self.folder is None

    @property
    def held_out(self) -> bool:
        return self.folder is not None and self.calibration is not None

    def __str__(self) -> str:
        if self.folder is None:
            return "synthetic"
        if self.calibration is not None:
            return (f"user images: {self.folder} ({self.used} held out of {self.total}; calibration read the first "
                    f"{self.calibration} by file name)")
        return f"user images: {self.folder} ({self.used} of {self.total})" if self.total else \
            f"user images: {self.folder}"

    def to_json(self) -> dict[str, Any] | None:
        if self.folder is None:
            return None
        return {"folder": self.folder, "calibration": self.calibration, "total": self.total, "used": self.used}

    @classmethod
    def from_json(cls, text: Any, detail: Any) -> "VerificationInputs":
        """From a record's ``inputs`` sentence and ``input_images`` fields; records from before ``input_images``
        named a ``--images`` folder by its path alone in ``inputs`` ("synthetic", or nothing, otherwise)."""
        if isinstance(detail, dict):
            calibration = detail.get("calibration")
            return cls(str(detail["folder"]), int(calibration) if calibration is not None else None,
                       int(detail.get("total") or 0), int(detail.get("used") or 0))
        if not text or text == "synthetic" or not isinstance(text, str):
            return cls()
        return cls(text)


@dataclass
class Verification:
    """A candidate runner against the reference over several batches: the verdict and every number behind it."""

    head: str
    runs: list[BatchComparison]
    thresholds: dict[str, Any]
    reference: str = "torch-fp32-cpu"
    candidate: str = ""
    precision: str = "fp32"
    inputs: VerificationInputs = field(default_factory=VerificationInputs)
    artifact: str | None = None

    @property
    def failures(self) -> list[str]:
        return [failure for run in self.runs for failure in run.failures]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def batches(self) -> list[int]:
        return [run.batch for run in self.runs]

    def worst(self) -> dict[str, Check]:
        """Per output, the check with the worst value over every batch."""
        worst: dict[str, Check] = {}
        for run in self.runs:
            for name, check in run.outputs.items():
                if name not in worst or check.worse_than(worst[name]):
                    worst[name] = check
        return worst

    def to_json(self) -> dict[str, Any]:
        out = {"passed": self.passed, "head": self.head, "thresholds": self.thresholds,
               "runs": [run.to_json() for run in self.runs], "failures": self.failures,
               "reference": self.reference, "candidate": self.candidate, "precision": self.precision,
               "inputs": str(self.inputs)}
        if not self.inputs.synthetic:
            out["input_images"] = self.inputs.to_json()
        if self.artifact is not None:
            out["artifact"] = self.artifact
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Verification":
        return cls(data.get("head", "raw"), [BatchComparison.from_json(run) for run in data.get("runs", [])],
                   data.get("thresholds", {}), data.get("reference", ""), data.get("candidate", ""),
                   data.get("precision", "fp32"),
                   VerificationInputs.from_json(data.get("inputs"), data.get("input_images")), data.get("artifact"))
