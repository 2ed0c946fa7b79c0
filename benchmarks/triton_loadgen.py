"""Load a served model with `hey` (an HTTP load generator not written here) over Triton's KServe v2 HTTP API.

A second opinion on `rtdetr-export serve-bench`: a different client (Go, no tritonclient), a different protocol
path (KServe v2 JSON bodies, ``POST /v2/models/<name>/infer``) and its own statistics. For each model and each
concurrency level the script

1. makes the request body once: one image (tests/data/images/cat_chelsea.jpg, pre-processed exactly as predict
   does, at the model's input size) as a KServe JSON tensor, every float32 written in its shortest exact form;
2. sends it once itself and checks the answer (HTTP 200 and every output the model declares), so a run never
   measures error responses;
3. runs ``hey -n MAX -c C -m POST -D body.json`` with a per-request timeout; after ``--seconds`` it sends hey
   SIGINT, which makes hey stop and print its summary of what completed (so every run is bounded in requests
   and in time), and parses that summary: requests/s, latency percentiles, status codes, errors;
4. reads the batches Triton formed from its statistics endpoint (``/v2/models/<name>/stats``, before and after).

Writes ``report.json`` and ``report.md`` into ``--report``. Localhost only: the URL must be 127.0.0.1.

    python3 benchmarks/triton_loadgen.py http://127.0.0.1:8000 --model r18vd_dyn --concurrency 1,4,16 \\
        --seconds 20 --report benchmarks/results/triton/<machine>/<date>/hey
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rtdetr_export.bench.machine import machine_info  # noqa: E402
from rtdetr_export.files import write_report_files  # noqa: E402
from rtdetr_export.imaging import load_image, preprocess  # noqa: E402

SCHEMA = "rtdetr-export/triton-loadgen"
IMAGE = REPO / "tests" / "data" / "images" / "cat_chelsea.jpg"


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.load(answer)


def _served(url: str, model: str) -> dict:
    """What the request needs from the served config: input names/types, outputs, input size, batching."""
    config = _get(f"{url}/v2/models/{model}/config")
    parameters = {k: json.loads(v["string_value"]) for k, v in config.get("parameters", {}).items()
                  if k.startswith("rtdetr_export.")}
    return {"inputs": config["input"], "outputs": [o["name"] for o in config["output"]],
            "input_size": parameters["rtdetr_export.input_size"],
            "max_batch_size": int(config.get("max_batch_size", 0)),
            "dynamic_batching": "dynamic_batching" in config}


def _floats(array: np.ndarray) -> str:
    """float32 values, each in the shortest text that reads back to the same float32 (what Triton parses)."""
    return ",".join(np.format_float_positional(v, unique=True, trim="-") for v in array.astype(np.float32).ravel())


def request_body(served: dict) -> bytes:
    """One image as a KServe v2 JSON request (raw head: ``images``; detections head adds ``orig_target_sizes``)."""
    picture = load_image(IMAGE)
    images = preprocess(picture, tuple(served["input_size"]))
    tensors = []
    for entry in served["inputs"]:
        if entry["name"] == "images":
            shape, data = list(images.shape), _floats(images)
        elif entry["name"] == "orig_target_sizes":
            shape, data = [1, 2], f"{picture.width},{picture.height}"
        else:
            raise SystemExit(f"error: input {entry['name']!r}: this script sends images only")
        tensors.append(f'{{"name":"{entry["name"]}","shape":{json.dumps(shape)},'
                       f'"datatype":"{entry["data_type"].removeprefix("TYPE_")}",'
                       f'"data":[{data}]}}')
    outputs = ",".join(f'{{"name":"{name}"}}' for name in served["outputs"])
    return f'{{"inputs":[{",".join(tensors)}],"outputs":[{outputs}]}}'.encode()


def check_answer(url: str, model: str, body: bytes, served: dict) -> int:
    """POST the body once; the answer must be HTTP 200 with every output. Returns the answer's size in bytes."""
    request = urllib.request.Request(f"{url}/v2/models/{model}/infer", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        raw = answer.read()
    names = [o["name"] for o in json.loads(raw)["outputs"]]
    if sorted(names) != sorted(served["outputs"]):
        raise SystemExit(f"error: {model} answered outputs {names}, not {served['outputs']}")
    return len(raw)


def _batch_counts(url: str, model: str) -> Counter:
    counts: Counter = Counter()
    for entry in _get(f"{url}/v2/models/{model}/stats").get("model_stats", []):
        for batch in entry.get("batch_stats", []):
            counts[int(batch["batch_size"])] += int(batch["compute_infer"]["count"])
    return counts


_SECONDS = r"([0-9.]+) secs"


def parse_hey(text: str) -> dict:
    """hey's summary (its default output) as numbers; latencies in ms."""
    def number(pattern: str) -> float | None:
        found = re.search(pattern, text)
        return float(found.group(1)) if found else None

    # hey prints "0% in 0.0000 secs" for the percentiles it has too few samples for: those are left out.
    percentiles = {f"p{int(p)}": float(s) * 1e3 for p, s in re.findall(r"\s(\d+)%+ in ([0-9.]+) secs", text)
                   if int(p) > 0}
    statuses = {int(code): int(count) for code, count in re.findall(r"\[(\d+)\]\s+(\d+) responses", text)}
    errors = {}
    if "Error distribution:" in text:
        for count, message in re.findall(r"^\s+\[(\d+)\]\s+(.+)$", text.split("Error distribution:")[1], re.M):
            errors[message.strip()[:160]] = int(count)
    return {"total_s": number(r"Total:\s+" + _SECONDS), "requests_per_s": number(r"Requests/sec:\s+([0-9.]+)"),
            "latency_ms": {"fastest": (number(r"Fastest:\s+" + _SECONDS) or 0) * 1e3,
                           "mean": (number(r"Average:\s+" + _SECONDS) or 0) * 1e3,
                           "slowest": (number(r"Slowest:\s+" + _SECONDS) or 0) * 1e3, **percentiles},
            "status_codes": statuses, "errors": errors}


def run_hey(url: str, model: str, body_file: Path, concurrency: int, seconds: float, max_requests: int,
            timeout_s: float) -> dict:
    """hey bounded by ``max_requests`` (-n) and by ``seconds`` (SIGINT: hey stops and reports what completed)."""
    command = ["hey", "-n", str(max(max_requests, concurrency)), "-c", str(concurrency), "-m", "POST",
               "-T", "application/json", "-D", str(body_file), "-t", str(int(timeout_s)),
               f"{url}/v2/models/{model}/infer"]
    started = time.monotonic()
    hey = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = hey.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        hey.send_signal(signal.SIGINT)
        try:  # in-flight requests finish or hit hey's own timeout (-t)
            output, _ = hey.communicate(timeout=timeout_s + 30)
        except subprocess.TimeoutExpired:
            hey.kill()
            raise SystemExit(f"error: hey did not stop within {timeout_s + 30:.0f} s of SIGINT") from None
    wall = time.monotonic() - started
    parsed = parse_hey(output)
    if parsed["requests_per_s"] is None:
        raise SystemExit(f"error: no summary in hey's output: {output.strip()[-400:]}")
    ok = parsed["status_codes"].get(200, 0)
    return {"command": " ".join(command[:-1] + [command[-1]]), "wall_s": round(wall, 3), "requests": ok,
            "failed": sum(parsed["status_codes"].values()) - ok + sum(parsed["errors"].values()), **parsed}


def render_markdown(report: dict) -> str:
    s = report["settings"]
    lines = ["# Triton load test with hey (KServe v2 HTTP, JSON bodies)", "",
             f"`hey` {s['hey_version']}, {s['seconds']:g} s (at most {s['max_requests']} requests) per model and "
             f"concurrency, per-request timeout {s['timeout_s']:g} s, at {s['url']}; created {report['created']}.",
             "", "| model | dynamic batching | concurrency | requests | failed | req/s | p50 ms | p90 ms | p99 ms | "
             "request body | answer | batches formed (size: count) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["results"]:
        lat = r["latency_ms"]
        formed = ", ".join(f"{k}: {v}" for k, v in r["batch_sizes"].items()) or "-"
        lines.append(f"| {r['model']} | {'on' if r['dynamic_batching'] else 'off'} | {r['concurrency']} | "
                     f"{r['requests']} | {r['failed']} | {r['requests_per_s']:.2f} | {lat.get('p50', float('nan')):.0f}"
                     f" | {lat.get('p90', float('nan')):.0f} | {lat.get('p99', float('nan')):.0f} | "
                     f"{r['body_bytes'] / 1e6:.1f} MB | {r['answer_bytes'] / 1e6:.2f} MB | {formed} |")
    for r in report["results"]:
        if r["errors"]:
            lines += ["", f"{r['model']} at concurrency {r['concurrency']}: errors {r['errors']}"]
    m = report["machine"]
    lines += ["", "requests/s is hey's own (completed requests over its run time, in-flight tail included); "
              "latencies are hey's distribution.", "", "## Machine", "",
              f"- CPU: {m['cpu']['model']} ({m['cpu']['logical_cores']} logical cores), load average at the end "
              f"{m.get('load_average')}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="http://127.0.0.1:PORT of the server (localhost only)")
    parser.add_argument("--model", dest="models", action="append", required=True)
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated levels (1..16)")
    parser.add_argument("--seconds", type=float, default=20.0, help="per model and level")
    parser.add_argument("--max-requests", type=int, default=500, help="per model and level")
    parser.add_argument("--timeout", dest="timeout_s", type=float, default=60.0, help="per request")
    parser.add_argument("--note", default=None)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    url = args.url.rstrip("/")
    if urllib.parse.urlsplit(url).hostname != "127.0.0.1" or not url.startswith("http://"):
        raise SystemExit("error: the URL must be http://127.0.0.1:PORT (this script loads local servers only)")
    levels = [int(c) for c in args.concurrency.split(",")]
    if not all(1 <= c <= 16 for c in levels) or args.seconds <= 0 or args.max_requests < 1:
        raise SystemExit("error: --concurrency levels within 1..16, --seconds > 0, --max-requests >= 1")
    if shutil.which("hey") is None:
        raise SystemExit("error: no hey on PATH (Debian/Ubuntu: apt-get install -y hey)")
    if args.report.exists() and any(args.report.iterdir()) and not args.force:
        raise SystemExit(f"error: {args.report} exists; pass --force to replace the report")
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "hey"], capture_output=True, text=True).stdout
    results = []
    with tempfile.TemporaryDirectory(prefix="rtdetr-loadgen-") as work:
        for model in args.models:
            served = _served(url, model)
            body = request_body(served)
            body_file = Path(work) / f"{model}.json"
            body_file.write_bytes(body)
            answer_bytes = check_answer(url, model, body, served)
            for concurrency in levels:
                print(f"[loadgen] {model}: hey, {concurrency} concurrent, {args.seconds:g} s", file=sys.stderr)
                before = _batch_counts(url, model)
                run = run_hey(url, model, body_file, concurrency, args.seconds, args.max_requests, args.timeout_s)
                time.sleep(1.0)  # Triton records a batch's statistics after its responses
                formed = _batch_counts(url, model) - before
                results.append({"model": model, "dynamic_batching": served["dynamic_batching"],
                                "concurrency": concurrency, "input_size": served["input_size"],
                                "body_bytes": len(body), "answer_bytes": answer_bytes,
                                "batch_sizes": {str(k): v for k, v in sorted(formed.items())}, **run})
                print(f"[loadgen] {model}: {run['requests']} ok, {run['failed']} failed, "
                      f"{run['requests_per_s']:.2f} req/s", file=sys.stderr)
    report = {"schema": SCHEMA, "schema_version": 1,
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "note": args.note, "machine": machine_info(),
              "settings": {"url": url, "tool": "hey", "hey_version": version or "?", "protocol": "KServe v2 HTTP JSON",
                           "image": str(IMAGE.relative_to(REPO)), "seconds": args.seconds,
                           "max_requests": args.max_requests, "timeout_s": args.timeout_s, "concurrency": levels},
              "results": results}
    texts = {"report.json": json.dumps(report, indent=2) + "\n", "report.md": render_markdown(report)}
    for path in write_report_files(args.report, texts, args.force):
        print(f"[loadgen] wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
