"""The report dict: every measured number, derived throughputs and speed-ups, and what ran where."""

from __future__ import annotations

import datetime
from typing import Any

from rtdetr_export import __version__
from rtdetr_export.stats import paired_speedup, speedup, throughput
from rtdetr_export.bench.roofline import RooflineBasis
from rtdetr_export.bench.targets import Target

SCHEMA = "rtdetr-export/bench"
SCHEMA_VERSION = 1


def _derive(results: list[dict[str, Any]], targets: list[Target], roofline: RooflineBasis) -> None:
    """Add throughput, the roofline and the speed-up over PyTorch eager FP32 (same device, same batch) to each
    result."""
    role = {t.name: t.role for t in targets}
    by_name = {t.name: t for t in targets}
    baseline = {r["batch"]: r for r in results
                if role.get(r["target"]) == "reference" and r.get("status") == "ok"}
    for r in results:
        if r.get("status") != "ok":
            continue
        r["throughput_ips"] = throughput(r["batch"], r["latency_ms"]["mean"])
        r["roofline"] = roofline.row(by_name[r["target"]], r["throughput_ips"]).to_json()
        if "e2e_ms" in r:
            r["e2e_throughput_ips"] = throughput(r["batch"], r["e2e_ms"]["mean"])
        base = baseline.get(r["batch"])
        r["speedup_vs_torch"] = None if base is None else {
            "p50": speedup(base["latency_ms"]["p50"], r["latency_ms"]["p50"]),
            "mean": speedup(base["latency_ms"]["mean"], r["latency_ms"]["mean"]),
            "paired": paired_speedup(base["samples_ms"], r["samples_ms"]),
            "baseline": base["target"]}


def peer_comparisons(results: list[dict[str, Any]], targets: list[Target]) -> list[dict[str, Any]]:
    """Our row vs the peer's row of the same backend, device and precision: how many times faster ours is."""
    by_key: dict[tuple, dict[str, str]] = {}
    for t in targets:
        if t.role in ("ours", "reference", "peer") and not t.skipped:
            key = (t.backend, t.device, t.precision, "compile" in t.name)
            by_key.setdefault(key, {}).setdefault("peer" if t.role == "peer" else "ours", t.name)
    ok = {(r["target"], r["batch"]): r for r in results if r.get("status") == "ok"}
    out = []
    for key, pair in by_key.items():
        if "ours" not in pair or "peer" not in pair:
            continue
        for batch in sorted({b for _, b in ok}):
            ours, peer = ok.get((pair["ours"], batch)), ok.get((pair["peer"], batch))
            if ours is None or peer is None:
                continue
            out.append({"backend": key[0], "device": key[1], "precision": key[2], "batch": batch,
                        "ours": pair["ours"], "peer": pair["peer"],
                        "ours_p50_ms": ours["latency_ms"]["p50"], "peer_p50_ms": peer["latency_ms"]["p50"],
                        "speedup_p50": speedup(peer["latency_ms"]["p50"], ours["latency_ms"]["p50"]),
                        "speedup_mean": speedup(peer["latency_ms"]["mean"], ours["latency_ms"]["mean"]),
                        "speedup_min": speedup(peer["latency_ms"]["min"], ours["latency_ms"]["min"]),
                        "speedup_paired": paired_speedup(peer["samples_ms"], ours["samples_ms"]),
                        # Only a peer that computes our reference's function makes the ratio a like-for-like one.
                        "both_match_reference": bool(ours["parity"]["passed"] and peer["parity"]["passed"])})
    return out


def assemble(note: str | None, machine: dict[str, Any], settings: dict[str, Any], model: dict[str, Any],
             targets: list[Target], results: list[dict[str, Any]], timing: dict[str, Any],
             roofline: RooflineBasis | None = None) -> dict[str, Any]:
    """The JSON-ready report that every writer renders."""
    roofline = roofline or RooflineBasis()
    _derive(results, targets, roofline)
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tool": {"name": "rtdetr-export", "version": __version__},
        "note": note,
        "machine": machine,
        "settings": settings,
        "model": model,
        "targets": [t.to_json() for t in targets],
        "results": results,
        "peer_comparison": peer_comparisons(results, targets),
        "roofline": roofline.to_json(),
        "timing": timing,
    }
