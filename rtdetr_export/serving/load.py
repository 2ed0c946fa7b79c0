"""Load test of a served model: N concurrent clients for a bounded time, as a report folder like bench's.

Each client is a thread with its own tritonclient connection, sending one image per request (encoded bytes to an
ensemble, pre-processed tensors to a plain model) in a loop until the deadline. Every call has a timeout, and a
client that loses the server checks whether it is still live: if not, all clients stop and the result says why,
so a stopped server ends the run with a clear error instead of a hang. The batch sizes the server formed come
from Triton's statistics endpoint (the difference over the run), for the model that runs the network.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rtdetr_export import __version__
from rtdetr_export.artifact import make_feed
from rtdetr_export.backends.triton_runner import TritonRunner, triton_error
from rtdetr_export.bench.machine import machine_info
from rtdetr_export.files import write_report_files
from rtdetr_export.imaging import preprocess
from rtdetr_export.serving.client import encode_png, served_parameters
from rtdetr_export.stats import summarize

SCHEMA = "rtdetr-export/serve-bench"
SCHEMA_VERSION = 1


@dataclass
class LoadResult:
    """One model under load: requests, failures, latency statistics and the batches Triton formed."""

    model: str
    url: str
    clients: int
    seconds: float
    requests: int
    failed: int
    wall_s: float
    throughput_rps: float
    latency_ms: dict[str, float] | None
    batch_sizes: dict[int, int] = field(default_factory=dict)  # batch size -> executions, from the server
    dynamic_batching: bool | None = None
    errors: dict[str, int] = field(default_factory=dict)  # first words of each error -> count
    aborted: str | None = None  # why the run stopped early (the server went away)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["batch_sizes"] = {str(k): v for k, v in sorted(self.batch_sizes.items())}
        return out


def _batch_stats(runner: TritonRunner, model: str) -> Counter:
    """Executions per batch size so far (Triton's cumulative statistics)."""
    if runner.protocol == "grpc":
        stats = runner.client.get_inference_statistics(model, as_json=True, client_timeout=runner.timeout_s)
    else:
        stats = runner.client.get_inference_statistics(model)
    counts: Counter = Counter()
    for entry in stats.get("model_stats", []):
        for batch in entry.get("batch_stats", []):
            counts[int(batch["batch_size"])] += int(batch["compute_infer"]["count"])
    return counts


def _request(served: dict[str, Any], image: Image.Image) -> dict[str, np.ndarray]:
    if served["role"] == "ensemble":
        return {"image": np.array([encode_png(image)], dtype=np.object_).reshape(
            (1, 1) if served["max_batch_size"] else (1,))}
    size = (image.height, image.width)
    return make_feed(served["export"]["head"], preprocess(image, tuple(served["input_size"])), [size])


def _server_live(url: str, model: str, timeout_s: float) -> bool:
    probe = TritonRunner(url, model, timeout_s)
    try:
        probe.activate()
        probe.deactivate()
        return True
    except Exception:
        return False


def run_load(url: str, model: str, images: list[Image.Image], clients: int = 16, seconds: float = 30.0,
             timeout_s: float = 30.0) -> LoadResult:
    """Drive ``model`` with ``clients`` concurrent clients for ``seconds`` (see the module docstring)."""
    control = TritonRunner(url, model, timeout_s)
    control.activate()
    served = served_parameters(control)
    inner = served.get("model", model) if served.get("role") == "ensemble" else model
    dynamic = served["dynamic_batching"]
    if inner != model:
        probe = TritonRunner(url, inner, timeout_s)
        probe.activate()
        dynamic = served_parameters(probe)["dynamic_batching"]
        probe.deactivate()
    feeds = [_request(served, image) for image in images]
    before = _batch_stats(control, inner)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: Counter = Counter()
    stop = threading.Event()
    aborted: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        runner = TritonRunner(url, model, timeout_s)
        try:
            runner.activate()
        except Exception as exc:
            with lock:
                errors[triton_error(exc)[:80]] += 1
            return
        n = index
        while not stop.is_set() and time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                runner.infer(feeds[n % len(feeds)])
                latencies[index].append((time.perf_counter() - started) * 1e3)
            except Exception as exc:
                with lock:
                    errors[triton_error(exc)[:80]] += 1
                if not _server_live(url, model, min(timeout_s, 5.0)):
                    with lock:
                        aborted.append(f"the server at {url} stopped answering: {triton_error(exc)}")
                    stop.set()
            n += 1
        runner.deactivate()

    started = time.perf_counter()
    deadline = started + seconds
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 2 * timeout_s + 10)  # bounded: every call inside has its own timeout
    wall = time.perf_counter() - started
    stop.set()
    samples = [ms for per_client in latencies for ms in per_client]
    formed: Counter = Counter()
    if not aborted:
        try:
            formed = _batch_stats(control, inner) - before
            # Triton records a batch's statistics after sending its responses: give the last ones a moment.
            settle = time.perf_counter() + 2.0
            while sum(k * v for k, v in formed.items()) < len(samples) and time.perf_counter() < settle:
                time.sleep(0.05)
                formed = _batch_stats(control, inner) - before
        except Exception as exc:
            aborted.append(f"the server at {url} stopped answering: {triton_error(exc)}")
    control.deactivate()
    return LoadResult(model=model, url=url, clients=clients, seconds=seconds, requests=len(samples),
                      failed=sum(errors.values()), wall_s=round(wall, 3),
                      throughput_rps=round(len(samples) / wall, 3) if wall > 0 else 0.0,
                      latency_ms=summarize(samples) if samples else None, batch_sizes=dict(formed),
                      dynamic_batching=dynamic, errors=dict(errors), aborted=aborted[0] if aborted else None)


def serve_report(results: list[LoadResult], settings: dict[str, Any], note: str | None = None) -> dict[str, Any]:
    """The JSON-ready report (bench's layout: schema, machine, settings, one result row per model)."""
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tool": {"name": "rtdetr-export", "version": __version__}, "note": note, "machine": machine_info(),
            "settings": settings, "results": [r.to_json() for r in results]}


def render_markdown(report: dict[str, Any]) -> str:
    lines = ["# Triton load test", ""]
    if report.get("note"):
        lines += [f"> {report['note']}", ""]
    settings = report["settings"]
    lines += [f"{settings['clients']} concurrent clients x {settings['seconds']} s per model, one image per request, "
              f"{settings['protocol']} at {settings['url']}; created {report['created']}.", "",
              "| model | dynamic batching | requests | failed | req/s | p50 ms | p90 ms | p99 ms | batches formed "
              "(size: count) |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["results"]:
        lat = r["latency_ms"] or {}
        formed = ", ".join(f"{k}: {v}" for k, v in r["batch_sizes"].items()) or "-"
        dyn = {True: "on", False: "off", None: "?"}[r.get("dynamic_batching")]
        lines.append(f"| {r['model']} | {dyn} | {r['requests']} | {r['failed']} | {r['throughput_rps']:.2f} | "
                     f"{lat.get('p50', float('nan')):.1f} | {lat.get('p90', float('nan')):.1f} | "
                     f"{lat.get('p99', float('nan')):.1f} | {formed} |")
    for r in report["results"]:
        if r.get("aborted") or r["errors"]:
            lines += ["", f"{r['model']}: {r.get('aborted') or ''} errors: {r['errors']}"]
    machine = report["machine"]
    lines += ["", "## Machine", "", f"- CPU: {machine['cpu']['model']} ({machine['cpu']['logical_cores']} logical "
              f"cores), load average at the end {machine.get('load_average')}",
              f"- libraries: {', '.join(f'{k} {v}' for k, v in machine['libraries'].items())}", ""]
    return "\n".join(lines)


def render_csv(report: dict[str, Any]) -> str:
    buffer = io.StringIO()
    fields = ["model", "dynamic_batching", "clients", "seconds", "requests", "failed", "throughput_rps",
              "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms", "batch_sizes", "aborted"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in report["results"]:
        lat = r["latency_ms"] or {}
        writer.writerow({**{k: r.get(k) for k in fields if k in r}, "batch_sizes": json.dumps(r["batch_sizes"]),
                         **{f"latency_{k}_ms": lat.get(k) for k in ("p50", "p90", "p99", "mean")}})
    return buffer.getvalue()


def write_serve_report(report: dict[str, Any], folder: str | Path, force: bool = False) -> list[Path]:
    """report.json, report.md and report.csv in ``folder``; never replaces a report without ``force``."""
    texts = {"report.json": json.dumps(report, indent=2) + "\n", "report.md": render_markdown(report),
             "report.csv": render_csv(report)}
    return write_report_files(folder, texts, force)
