"""Why an artifact was chosen: the record ``rtdetr-export select`` adds to the sidecar of the file it writes.

The chosen file is a byte-for-byte copy of one candidate (its ONNX metadata still holds the export's own record);
its sidecar is that record plus ``selection``: every candidate measured in the same run with its numbers, the AP
budget, and the runtime and precision hint the file was measured on, which a deployment must use to get them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rtdetr_export.artifact.records.fields import RecordError, _may, _need


@dataclass(frozen=True)
class CandidateResult:
    """One candidate's numbers in a selection run (None where it was not measured: skipped or failed)."""

    name: str
    artifact: str  # which artifact recipe made its file: "fp32", "int8_cpu", ...
    runtime: str  # the runner family: "onnxruntime", "openvino"
    precision_hint: str | None  # the runtime's inference precision hint (OpenVINO), None for none
    status: str  # "ok", "skipped" or "failed"
    reason: str = ""
    p50_ms: float | None = None  # batch 1, model only
    throughput_ips: float | None = None  # at the throughput batch
    ap: float | None = None
    ap_delta: float | None = None  # minus the baseline's AP
    size_bytes: int | None = None
    verdict: str = ""  # the artifact's own verification and this runtime's parity, in words
    on_front: bool = False
    within_budget: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "artifact": self.artifact, "runtime": self.runtime,
                "precision_hint": self.precision_hint, "status": self.status, "reason": self.reason,
                "p50_ms": self.p50_ms, "throughput_ips": self.throughput_ips, "ap": self.ap,
                "ap_delta": self.ap_delta, "size_bytes": self.size_bytes, "verdict": self.verdict,
                "on_front": self.on_front, "within_budget": self.within_budget}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "CandidateResult":
        def number(key: str) -> float | None:
            value = _may(data, key, (int, float), where)
            return None if value is None else float(value)

        size = _may(data, "size_bytes", int, where)
        return cls(_need(data, "name", str, where), _need(data, "artifact", str, where),
                   _need(data, "runtime", str, where), _may(data, "precision_hint", str, where),
                   _need(data, "status", str, where), str(_may(data, "reason", str, where, "")),
                   number("p50_ms"), number("throughput_ips"), number("ap"), number("ap_delta"), size,
                   str(_may(data, "verdict", str, where, "")), bool(_may(data, "on_front", bool, where, False)),
                   bool(_may(data, "within_budget", bool, where, False)))


@dataclass(frozen=True)
class SelectionRecord:
    """The selection behind a chosen artifact: the budget, the baseline, the winner and every candidate."""

    chosen: str  # the candidate's name
    runtime: str
    precision_hint: str | None
    max_ap_drop: float
    baseline: str  # the candidate whose AP the budget is counted from (ONNX Runtime FP32)
    baseline_ap: float
    dataset: str  # the annotation file the AP was measured on
    images: int  # how many of its images
    batches: tuple[int, int]  # (latency batch, throughput batch)
    threads: int | None
    cpu: str
    created: str = ""
    candidates: list[CandidateResult] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "runtime": self.runtime, "precision_hint": self.precision_hint,
                "max_ap_drop": self.max_ap_drop, "baseline": self.baseline, "baseline_ap": self.baseline_ap,
                "dataset": self.dataset, "images": self.images, "batches": list(self.batches),
                "threads": self.threads, "cpu": self.cpu, "created": self.created,
                "candidates": [c.to_json() for c in self.candidates]}

    @classmethod
    def from_json(cls, data: Any, where: str = "selection") -> "SelectionRecord":
        batches = _need(data, "batches", list, where)
        if len(batches) != 2 or not all(isinstance(b, int) for b in batches):
            raise RecordError(f"{where}: batches must be [latency batch, throughput batch], got {batches!r}")
        return cls(_need(data, "chosen", str, where), _need(data, "runtime", str, where),
                   _may(data, "precision_hint", str, where), float(_need(data, "max_ap_drop", (int, float), where)),
                   _need(data, "baseline", str, where), float(_need(data, "baseline_ap", (int, float), where)),
                   _need(data, "dataset", str, where), int(_need(data, "images", int, where)),
                   (int(batches[0]), int(batches[1])), _may(data, "threads", int, where),
                   str(_may(data, "cpu", str, where, "")), str(_may(data, "created", str, where, "")),
                   [CandidateResult.from_json(c, f"{where} candidate")
                    for c in _need(data, "candidates", list, where)])
