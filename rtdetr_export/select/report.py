"""select's results: one typed row per candidate and the report over them, as JSON, Markdown and CSV."""

from __future__ import annotations

import csv
import datetime
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtdetr_export import __version__
from rtdetr_export.artifact.records import CandidateResult
from rtdetr_export.bench.parity import Parity
from rtdetr_export.stats import paired_speedup

SCHEMA = "rtdetr-export/select"


@dataclass
class SelectRow:
    """One candidate: what ran, how fast at each batch, how accurate, how trusted, where it stands."""

    name: str
    artifact: str  # the recipe's name (the file's stem)
    backend: str
    hint: str | None
    status: str = "ok"  # "ok", "skipped" (its runtime is missing here) or "failed" (with the reason)
    reason: str = ""
    note: str = ""  # what a reader must know about its numbers (Runtime.note)
    path: str | None = None
    size_bytes: int | None = None
    latency_ms: dict[int, dict[str, float]] = field(default_factory=dict)  # batch -> stats.summarize
    samples_ms: dict[int, list[float]] = field(default_factory=dict)
    throughput_ips: dict[int, float] = field(default_factory=dict)
    ap: float | None = None
    ap50: float | None = None
    ap_delta: float | None = None
    verified: str = "-"  # the artifact's own verification, from its record
    verified_passed: bool | None = None
    parity: Parity | None = None  # this runtime's outputs at batch 1 against the PyTorch reference
    on_front: bool = False
    within_budget: bool = False

    @property
    def runtime(self) -> str:
        return f"{self.backend} {self.hint}" if self.hint else self.backend

    @property
    def measured(self) -> bool:
        return self.status == "ok" and self.ap is not None and 1 in self.latency_ms

    @property
    def trusted(self) -> bool:
        """Neither the artifact's verification nor this runtime's parity failed."""
        return self.verified_passed is not False and (self.parity is None or self.parity.passed is not False)

    @property
    def verdict(self) -> str:
        here = "-" if self.parity is None else (
            ("pass" if self.parity.passed else "FAIL" if self.parity.passed is False else "not judged")
            + f" ({self.parity.limits.split(' ')[0]})")
        return f"export: {self.verified}; here: {here}"

    def p50(self, batch: int) -> float | None:
        stats = self.latency_ms.get(batch)
        return None if stats is None else stats["p50"]

    def result(self, throughput_batch: int) -> CandidateResult:
        """The row as the chosen artifact's sidecar records it."""
        return CandidateResult(self.name, self.artifact, self.backend, self.hint, self.status, self.reason,
                               self.p50(1), self.throughput_ips.get(throughput_batch), self.ap, self.ap_delta,
                               self.size_bytes, self.verdict, self.on_front, self.within_budget)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "artifact": self.artifact, "backend": self.backend, "precision_hint": self.hint,
                "status": self.status, "reason": self.reason, "note": self.note,
                "file": Path(self.path).name if self.path else None, "size_bytes": self.size_bytes,
                "latency_ms": {str(b): s for b, s in self.latency_ms.items()},
                "samples_ms": {str(b): [round(v, 4) for v in s] for b, s in self.samples_ms.items()},
                "throughput_ips": {str(b): v for b, v in self.throughput_ips.items()}, "ap": self.ap,
                "ap50": self.ap50, "ap_delta_vs_baseline": self.ap_delta, "verified": self.verified,
                "verified_passed": self.verified_passed, "parity": self.parity.to_json() if self.parity else None,
                "verdict": self.verdict, "on_front": self.on_front, "within_budget": self.within_budget}


@dataclass
class SelectReport:
    """Every candidate of one run, the budget, the front, and the choice (``chosen`` None: none met the budget,
    ``closest`` names the row that came nearest)."""

    rows: list[SelectRow]
    max_ap_drop: float
    baseline: str
    batches: tuple[int, int]
    settings: dict[str, Any]
    dataset: dict[str, Any]
    machine: dict[str, Any]
    timing: dict[str, Any] = field(default_factory=dict)
    front: list[str] = field(default_factory=list)
    chosen: str | None = None
    closest: str | None = None
    shortfall: float = 0.0
    written: str | None = None  # the chosen artifact's output path
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc)
                         .isoformat(timespec="seconds"))

    def row(self, name: str | None) -> SelectRow | None:
        return next((r for r in self.rows if r.name == name), None)

    @property
    def baseline_ap(self) -> float | None:
        row = self.row(self.baseline)
        return None if row is None else row.ap

    @property
    def refusal(self) -> str:
        """The one line that says no candidate met the budget and which came closest."""
        closest = self.row(self.closest)
        if closest is None or closest.ap_delta is None:
            return f"no candidate was measured within --max-ap-drop {self.max_ap_drop:g}"
        return (f"no candidate meets --max-ap-drop {self.max_ap_drop:g}: the closest, {closest.name} "
                f"(AP {closest.ap:.4f}, {closest.ap_delta:+.4f} vs {self.baseline}, p50 {closest.p50(1):.1f} ms), "
                f"would need --max-ap-drop {self.max_ap_drop + self.shortfall:.4f}")

    def speedup(self, name: str | None) -> float | None:
        """Baseline p50 / this row's p50 at batch 1, from the same interleaved run."""
        row, base = self.row(name), self.row(self.baseline)
        if row is None or base is None or row.p50(1) is None or base.p50(1) is None:
            return None
        return base.p50(1) / row.p50(1)

    def paired_speedup(self, name: str | None) -> float | None:
        """Median over rounds of baseline / this row at batch 1, the two samples of each round taken seconds apart
        (what keeps the least of a shared machine's drifting load)."""
        row, base = self.row(name), self.row(self.baseline)
        if row is None or base is None or 1 not in row.samples_ms or 1 not in base.samples_ms:
            return None
        return paired_speedup(base.samples_ms[1], row.samples_ms[1])

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "schema_version": 1, "created": self.created,
                "tool": {"name": "rtdetr-export", "version": __version__}, "machine": self.machine,
                "settings": self.settings, "dataset": self.dataset, "max_ap_drop": self.max_ap_drop,
                "baseline": self.baseline, "baseline_ap": self.baseline_ap, "batches": list(self.batches),
                "rows": [r.to_json() for r in self.rows], "pareto_front": self.front, "chosen": self.chosen,
                "speedup_vs_baseline_b1": self.speedup(self.chosen),
                "paired_speedup_vs_baseline_b1": {r.name: self.paired_speedup(r.name) for r in self.rows if r.measured},
                "closest": self.closest,
                "written": self.written, "timing": self.timing}


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def select_markdown(report: SelectReport) -> str:
    """The table a person reads: every candidate, the front marked (*), the choice, what was skipped and why."""
    b1, bn = report.batches
    cpu = report.machine.get("cpu", {})
    lines = [f"# Fastest CPU artifact within {report.max_ap_drop:g} AP of {report.baseline}", "",
             f"{cpu.get('model', '?')} ({cpu.get('usable_cores', '?')} usable cores), threads "
             f"{report.settings.get('threads') or 'library default'}, load average "
             f"{report.timing.get('load_average_start')} -> {report.timing.get('load_average_end')}; "
             f"AP on {report.dataset.get('images')} images of {report.dataset.get('annotations')}; "
             f"{report.settings.get('iters')} interleaved rounds per batch, {report.settings.get('settle_ms')} ms "
             "pause before each call.", "",
             f"| front | candidate | artifact | runtime | p50 b{b1} ms | vs {report.baseline} b{b1} (paired) | "
             f"img/s b{bn} | AP | AP vs {report.baseline} | size MB | verdict | within budget |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report.rows:
        if r.status != "ok":
            lines.append(f"| | {r.name} | {r.artifact} | {r.runtime} | {r.status}: {r.reason} | | | | | | | |")
            continue
        mark = "*" if r.on_front else ""
        chosen = " (chosen)" if r.name == report.chosen else ""
        lines.append(f"| {mark} | {r.name}{chosen} | {r.artifact} | {r.runtime} | {_number(r.p50(b1), '.1f')} | "
                     f"{_number(report.paired_speedup(r.name), '.2f')}x | {_number(r.throughput_ips.get(bn), '.1f')} | {_number(r.ap, '.4f')} | "
                     f"{_number(r.ap_delta, '+.4f')} | {_number((r.size_bytes or 0) / 1e6, '.2f')} | {r.verdict} | "
                     f"{'yes' if r.within_budget else 'no'} |")
    lines.append("")
    notes = [f"- {r.name}: {r.note}" for r in report.rows if r.note]
    if notes:
        lines += ["Notes:", "", *notes, ""]
    if report.chosen:
        speedup = report.speedup(report.chosen)
        lines.append(f"Chosen: **{report.chosen}**, {_number(speedup, '.2f')}x {report.baseline} at batch {b1} "
                     f"(p50; paired {_number(report.paired_speedup(report.chosen), '.2f')}x; same run)"
                     + (f", written to {report.written}" if report.written else "") + ".")
    else:
        lines.append(f"Nothing chosen: {report.refusal}.")
    lines += ["", "`*`: on the Pareto front of batch-1 p50 latency against AP (no other row is both faster and more "
              "accurate). verdict: the artifact's own verification when it was made (ONNX Runtime), then this "
              "runtime's outputs on the first image against PyTorch, judged as verification judges its precision."]
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("name", "artifact", "backend", "precision_hint", "status", "reason", "p50_b1_ms", "mean_b1_ms",
              "p50_bn_ms", "throughput_bn_ips", "ap", "ap50", "ap_delta", "size_bytes", "verified", "parity_passed",
              "on_front", "within_budget", "chosen")


def render_csv(report: SelectReport) -> str:
    b1, bn = report.batches
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in report.rows:
        writer.writerow([r.name, r.artifact, r.backend, r.hint or "", r.status, r.reason, r.p50(b1),
                         (r.latency_ms.get(b1) or {}).get("mean"), r.p50(bn), r.throughput_ips.get(bn), r.ap, r.ap50,
                         r.ap_delta, r.size_bytes, r.verified, None if r.parity is None else r.parity.passed,
                         r.on_front, r.within_budget, r.name == report.chosen])
    return buffer.getvalue()
