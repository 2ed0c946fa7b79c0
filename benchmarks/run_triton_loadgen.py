"""Our load test next to an independent one on the same served r18vd: `rtdetr-export serve-bench` (tritonclient
HTTP, binary tensors) and `hey` (benchmarks/triton_loadgen.py: KServe v2 JSON bodies), interleaved per
concurrency level so that a change in the machine's background load hits both.

Exports r18vd (discrete sampler, dynamic batch, seeded random weights), writes one repository serving it twice,
``r18vd_dyn`` and ``r18vd_nodyn`` (Python backend + ONNX Runtime, 2 threads, 1 instance, max_batch_size 8, queue
delay 5 ms: run_triton.py's settings), starts it with ``rtdetr-export serve`` on 127.0.0.1, then for each
concurrency level runs hey and serve-bench over HTTP against both models. Reports:
``benchmarks/results/triton/<machine>/<date>/r18vd_loadgen/{hey,serve_bench}_c<N>/`` and ``comparison.{json,md}``.

    python3 benchmarks/run_triton_loadgen.py                                   # the committed run (~8 min)
    python3 benchmarks/run_triton_loadgen.py --preset tiny --seconds 5 --concurrency 1,4 --out /tmp/look
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rtdetr_export.pipeline import OnnxExportOptions, export_onnx  # noqa: E402
from rtdetr_export.serving import TritonOptions, write_repository  # noqa: E402
from rtdetr_export.weights import load_model  # noqa: E402


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rtdetr_export", *args]


def _row(tool: str, model: str, concurrency: int, requests: int, failed: int, rps: float, p50: float | None,
         p90: float | None, batches: dict) -> dict:
    return {"tool": tool, "model": model, "concurrency": concurrency, "requests": requests, "failed": failed,
            "requests_per_s": rps, "p50_ms": p50, "p90_ms": p90, "batch_sizes": batches}


def comparison(out: Path, levels: list[int]) -> dict:
    rows = []
    for c in levels:
        hey = json.loads((out / f"hey_c{c}" / "report.json").read_text())
        ours = json.loads((out / f"serve_bench_c{c}" / "report.json").read_text())
        for r in ours["results"]:
            lat = r["latency_ms"] or {}
            rows.append(_row("serve-bench", r["model"], c, r["requests"], r["failed"], r["throughput_rps"],
                             lat.get("p50"), lat.get("p90"), r["batch_sizes"]))
        for r in hey["results"]:
            rows.append(_row("hey", r["model"], c, r["requests"], r["failed"], r["requests_per_s"],
                             r["latency_ms"].get("p50"), r["latency_ms"].get("p90"), r["batch_sizes"]))
    first = hey["results"][0]
    return {"rows": rows, "json_body_bytes": first["body_bytes"], "input_size": first["input_size"],
            "machine": hey["machine"], "settings": hey["settings"]}


def render(summary: dict, settings: dict) -> str:
    lines = ["# serve-bench vs hey on the same server", "", settings["note"], "",
             f"KServe JSON request body (hey): {summary['json_body_bytes'] / 1e6:.1f} MB per image; serve-bench sends "
             f"the same tensor as binary data: {settings['binary_bytes'] / 1e6:.1f} MB.", "",
             "| model | concurrency | tool | requests | failed | req/s | p50 ms | p90 ms | batches formed |",
             "|---|---:|---|---:|---:|---:|---:|---:|---|"]
    fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
    for r in sorted(summary["rows"], key=lambda r: (r["model"], r["concurrency"], r["tool"] != "serve-bench")):
        formed = ", ".join(f"{k}: {v}" for k, v in r["batch_sizes"].items()) or "-"
        lines.append(f"| {r['model']} | {r['concurrency']} | {r['tool']} | {r['requests']} | {r['failed']} | "
                     f"{r['requests_per_s']:.2f} | {fmt(r['p50_ms'])} | {fmt(r['p90_ms'])} | {formed} |")
    m = summary["machine"]
    lines += ["", f"Machine: {m['cpu']['model']} ({m['cpu']['logical_cores']} logical cores), load average at the "
              f"end {m.get('load_average')}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="r18vd")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--machine", default="2core-epyc")
    parser.add_argument("--note", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    date = datetime.date.today().isoformat()
    out = args.out or REPO / "benchmarks" / "results" / "triton" / args.machine / date / f"{args.preset}_loadgen"
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"error: {out} exists; move it away first")
    note = args.note or (f"{args.preset} (discrete sampler, random weights), Python backend + ONNX Runtime "
                         f"({args.threads} threads, 1 instance, max_batch_size 8, queue delay 5000 us) on the "
                         f"nvidia-pytriton tritonserver started by `rtdetr-export serve`, clients on the same "
                         f"machine, {args.seconds:g} s per model, level and tool, HTTP on 127.0.0.1")
    # This tree's package in every child, so the server's stubs import it too (serve links what it imported).
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    with tempfile.TemporaryDirectory(prefix="rtdetr-loadgen-") as work:
        work = Path(work)
        artifact = work / f"{args.preset}.onnx"
        model = load_model(preset=args.preset, method="discrete")
        export_onnx(model, artifact, OnnxExportOptions(dynamic_batch=True, verify=False))
        repository = work / "repo"
        names = [f"{args.preset}_dyn", f"{args.preset}_nodyn"]
        for name, dynamic in zip(names, (True, False)):
            write_repository([artifact], repository, TritonOptions(
                name=name, backend="python", threads=args.threads, max_batch=8, max_queue_delay_us=5000,
                dynamic_batching=dynamic), force=True)
        serve = subprocess.Popen(_cli("serve", str(repository), "--http-port", "0", "--grpc-port", "0",
                                      "--metrics-port", "0", "--json"), stdout=subprocess.PIPE, text=True, env=env,
                                 cwd=REPO)
        try:
            line = serve.stdout.readline()
            if not line:
                raise SystemExit(f"error: rtdetr-export serve exited with {serve.wait()}")
            url = json.loads(line)["http"]
            for c in levels:
                subprocess.run([sys.executable, str(REPO / "benchmarks" / "triton_loadgen.py"), url,
                                *[a for n in names for a in ("--model", n)], "--concurrency", str(c),
                                "--seconds", str(args.seconds), "--max-requests", "500", "--timeout", "120",
                                "--note", note, "--report", str(out / f"hey_c{c}")], check=True, env=env, cwd=REPO)
                subprocess.run(_cli("serve-bench", url, *[a for n in names for a in ("--model", n)],
                                    "--clients", str(c), "--seconds", str(args.seconds), "--timeout", "120",
                                    "--note", note, "--report", str(out / f"serve_bench_c{c}"), "--quiet"),
                               check=True, env=env, cwd=REPO)
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(120)
    summary = comparison(out, levels)
    height, width = summary["input_size"]
    settings = {"note": note, "binary_bytes": 3 * height * width * 4}  # float32 [1, 3, H, W]
    (out / "comparison.json").write_text(json.dumps({**summary, **settings}, indent=2) + "\n")
    (out / "comparison.md").write_text(render(summary, settings))
    print(f"wrote {out}/comparison.md", file=sys.stderr)


if __name__ == "__main__":
    main()
