"""report.md: trtexec-like latency tables, end-to-end, speed-ups over PyTorch, parity, what was skipped."""

from __future__ import annotations

from typing import Any

from rtdetr_export.backends.split_runner import SPLIT_STAGES
from rtdetr_export.bench.parity import headline
from rtdetr_export.bench.peaks import Peaks
from rtdetr_export.bench.roofline import Roofline


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _machine_lines(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    cpu = m["cpu"]
    gpu = m.get("gpu")
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    git = m.get("git") or {}
    timing = report["timing"]
    lines = [f"- CPU: {cpu['model']} ({cpu['physical_cores']} physical / {cpu['logical_cores']} logical cores, "
             f"{cpu['usable_cores']} usable), {m['memory_gb']} GB RAM, {m['os']}",
             f"- GPU: {gpu['name']}, driver {gpu['driver']}, CUDA {gpu['cuda']}" if gpu else "- GPU: none",
             f"- libraries: {libs}",
             f"- commit: {git.get('commit', 'unknown')}{' (uncommitted changes)' if git.get('dirty') else ''}",
             f"- load average (1/5/15 min) at start {timing['load_average_start']}, at end "
             f"{timing['load_average_end']}; wall time {timing['wall_s']} s"]
    return lines


def _settings_line(report: dict[str, Any]) -> str:
    s = report["settings"]
    count = f"{s['seconds']} s per row" if s.get("seconds") else f"{s['iters']} iterations"
    threads = s.get("threads") or "library default"
    rounds = ", ".join(f"batch {b}: {n}" for b, n in s["rounds"].items())
    e2e = ", ".join(f"batch {b}: {n}" for b, n in s["e2e_rounds"].items())
    return (f"Device {s['device']}, batch {', '.join(map(str, s['batches']))}, {s['warmup']} warm-up runs, {count} "
            f"in interleaved rounds (done: {rounds}; {s.get('settle_ms', 0):g} ms pause before each call), "
            f"end-to-end rounds ({e2e}), threads {threads}, "
            f"{s['head']} head, end-to-end inputs: {s['inputs']}.")


def _stage_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Split artifacts: graph 1, host step and graph 2 of the same timed calls (p50 each; their sum is near the
    total's p50, not equal to it: medians do not add)."""
    split = [r for r in rows if r.get("stages_ms")]
    if not split:
        return []
    return ["", "Split artifacts, per stage (ms, p50 over the same calls; graph 1 -> host step -> graph 2):", ""] + \
        _table(["backend", "total", "graph 1", "host step", "graph 2"],
               [[r["target"], _ms(r["latency_ms"]["p50"])]
                + [_ms(r["stages_ms"][stage]["p50"]) for stage in SPLIT_STAGES] for r in split])


def _roofline_cell(row: dict[str, Any]) -> str:
    return Roofline.from_json(row["roofline"]).cell() if row.get("roofline") else "-"


def _roofline_lines(report: dict[str, Any], ok: list[dict[str, Any]]) -> list[str]:
    """What the roofline column is made of: each graph's FLOP count and the measured peaks (docs/benchmarks.md)."""
    basis = report.get("roofline")
    if not basis:
        return []
    lines = ["", "## Roofline (compute only)", "",
             "The roofline column: FLOPs per image x images per second, and its fraction of this machine's peak in "
             "the row's precision, measured in this run. " + basis["convention"][0].upper() + basis["convention"][1:]
             + ". A fraction of the compute roof only: memory bandwidth is not measured.", ""]
    counts = []
    for label, count in basis["flops"].items():
        if "error" in count:
            counts.append(f"- {label}: {count['error']}")
        else:
            shape = "x".join(map(str, count["input_shapes"].get("images", [])))
            counts.append(f"- {label}: {count['flops_per_image'] / 1e9:.4g} GFLOP per image (counted at images "
                          f"{shape or '?'}; {count['other_outputs'] / count['batch'] / 1e6:.3g} M output elements "
                          "of uncounted ops per image)")
    if basis.get("model_flops_from"):
        counts.append("- rows that run no graph of their own (PyTorch, TensorRT) use "
                      f"{basis['model_flops_from']}'s count")
    lines += ["FLOPs (" + basis["method"] + "):", ""] + counts + ["", "Peaks (the best call of one GEMM per precision, "
                                                                  "interleaved with the rounds):", ""]
    peaks = Peaks.from_json(basis["peaks"]).by_precision.values()
    lines += _table(["precision", "GFLOP/s", "GEMM (M x K x N)", "runtime", "threads", "calls", "note"],
                    [[p.precision.upper(), "-" if p.gflops is None else f"{p.gflops:.1f}", "x".join(map(str, p.shape)),
                      p.runtime, str(p.threads or "default"), str(p.samples), p.note or ""] for p in peaks])
    notes = {(r["target"], Roofline.from_json(r["roofline"]).note) for r in ok if r.get("roofline")}
    notes = sorted((name, note) for name, note in notes if note)
    if notes:
        lines += [""] + [f"- {name}: {note}" for name, note in notes]
    return lines


def bench_markdown(report: dict[str, Any]) -> str:
    """The whole report.md text."""
    model = report["model"]
    source = model["source"]
    weights = f"random weights (seed {source.get('seed')})" if source["format"] == "random" else \
        f"{source['format']} {source.get('path')}"
    lines = ["# Latency report", ""]
    if report.get("note"):
        lines += [f"> **{report['note']}**", ""]
    lines += [f"Model: {weights}, method {model['method']}, input {model['input_size'][0]}x{model['input_size'][1]}, "
              f"{model['parameters']:,} parameters. Created {report['created']} by rtdetr-export "
              f"{report['tool']['version']}.", "", _settings_line(report), "", "## Machine", ""]
    lines += _machine_lines(report)
    ok = [r for r in report["results"] if r.get("status") == "ok"]
    for batch in report["settings"]["batches"]:
        rows = [r for r in ok if r["batch"] == batch]
        if not rows:
            continue
        lines += ["", f"## Batch {batch}", "", "Model-only latency (ms; inputs already preprocessed in memory):", ""]
        lines += _table(["backend", "min", "mean", "p50", "p90", "p99", "max", "std", "n", "img/s", "cold",
                         "peak mem (MB)", "compute (roofline)"],
                        [[r["target"]] + [_ms(r["latency_ms"][k]) for k in ("min", "mean", "p50", "p90", "p99",
                                                                             "max", "std")]
                         + [str(r["latency_ms"]["n"]), f"{r['throughput_ips']:.2f}", _ms(r.get("cold_ms")),
                            f"{r['memory']['peak_mb']:.0f} (+{r['memory']['delta_mb'] or 0:.0f})", _roofline_cell(r)]
                         for r in rows])
        lines += _stage_lines(rows)
        e2e = [r for r in rows if "e2e_ms" in r]
        if e2e:
            lines += ["", "End to end (ms: decode + preprocess + infer + postprocess, from image files):", ""]
            lines += _table(["backend", "p50", "mean", "min", "max", "img/s", "decode", "preprocess", "infer",
                             "postprocess"],
                            [[r["target"], _ms(r["e2e_ms"]["p50"]), _ms(r["e2e_ms"]["mean"]), _ms(r["e2e_ms"]["min"]),
                              _ms(r["e2e_ms"]["max"]), f"{r['e2e_throughput_ips']:.2f}"]
                             + [_ms(r["e2e_stages_ms"][s]) for s in ("decode", "preprocess", "infer", "postprocess")]
                             for r in e2e])
    lines += _roofline_lines(report, ok)
    lines += ["", "## Speed-up over PyTorch eager FP32", ""]
    batches = report["settings"]["batches"]
    cell = {(r["target"], r["batch"]): (r.get("speedup_vs_torch") or {}).get("p50") for r in ok}
    names = dict.fromkeys(r["target"] for r in ok)
    lines += _table(["backend"] + [f"batch {b} (p50)" for b in batches],
                    [[name] + [_x(cell.get((name, b))) for b in batches] for name in names])
    if report["peer_comparison"]:
        lines += ["", "## Ours vs the peer path (transformers -> torch.onnx -> onnxslim, same weights and session "
                  "settings)", ""]
        lines += ["Speed-up = peer latency / our latency; 'paired' is the median of the per-round ratios (each round "
                  "runs both back to back), the figure least moved by load from elsewhere.", ""]
        lines += _table(["backend", "batch", "ours p50", "peer p50", "speed-up p50", "paired", "mean", "min",
                         "same outputs"],
                        [[f"{c['backend']}-{c['device']} {c['precision']}", str(c["batch"]), _ms(c["ours_p50_ms"]),
                          _ms(c["peer_p50_ms"]), _x(c["speedup_p50"]), _x(c["speedup_paired"]), _x(c["speedup_mean"]),
                          _x(c["speedup_min"]), "yes" if c["both_match_reference"] else "NO: not comparable"]
                         for c in report["peer_comparison"]])
    lines += ["", "## Parity against the PyTorch FP32 reference", ""]
    parity_rows = []
    for r in ok:
        p = r["parity"]
        verdict = {True: "pass", False: "FAIL", None: "not judged"}[p["passed"]]
        parity_rows.append([r["target"], str(r["batch"]), headline(p), str(p["reordered_rows"]),
                            str(p["flipped_rows"]), f"{verdict} ({p['limits']})"])
    lines += _table(["backend", "batch", "largest error / agreement", "re-paired rows", "rounding flips",
                     "verdict (limits)"], parity_rows)
    skipped = [t for t in report["targets"] if t["status"] != "ok"]
    failed = [r for r in report["results"] if r.get("status") == "failed"]
    if skipped or failed:
        lines += ["", "## Not measured", ""]
        lines += [f"- {t['name']}: {t.get('reason', t['status'])}" for t in skipped]
        lines += [f"- {r['target']} at batch {r['batch']}: {r['reason']}" for r in failed]
    return "\n".join(lines) + "\n"
