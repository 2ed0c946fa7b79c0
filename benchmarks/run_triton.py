"""The Triton load test: 16 concurrent clients for 30 s against one model with dynamic batching on and off.

Exports r18vd (discrete sampler, dynamic batch, seeded random weights: throughput does not depend on the
weights), writes one repository with the same artifact served twice, ``<preset>_dyn`` (dynamic batching) and
``<preset>_nodyn`` (each request alone), through the Python backend with ONNX Runtime (the only backend the
nvidia-pytriton wheel's server has), starts that server on localhost and runs ``rtdetr-export serve-bench`` over
gRPC, one model after the other. Report:
``benchmarks/results/triton/<machine>/<date>/<preset>_python_onnxruntime/report.{json,md,csv}``.

    python3 benchmarks/run_triton.py                              # the committed run
    python3 benchmarks/run_triton.py --seconds 5 --preset tiny    # a quick look

Run it alone: it measures the CPU, and the report's load average says what else ran.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rtdetr_export.pipeline import OnnxExportOptions, export_onnx  # noqa: E402
from rtdetr_export.serving import TritonOptions, write_repository  # noqa: E402
from rtdetr_export.serving.server import LocalTriton  # noqa: E402
from rtdetr_export.weights import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="r18vd")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (one instance)")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--queue-delay-us", type=int, default=5000)
    parser.add_argument("--machine", default="2core-epyc")
    parser.add_argument("--note", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    date = datetime.date.today().isoformat()
    out = args.out or REPO / "benchmarks" / "results" / "triton" / args.machine / date / \
        f"{args.preset}_python_onnxruntime"
    with tempfile.TemporaryDirectory(prefix="rtdetr-triton-bench-") as work:
        work = Path(work)
        artifact = work / f"{args.preset}.onnx"
        export_onnx(load_model(preset=args.preset, method="discrete"), artifact,
                    OnnxExportOptions(dynamic_batch=True, verify=False))
        repository = work / "repo"
        for suffix, dynamic in (("dyn", True), ("nodyn", False)):
            write_repository([artifact], repository, TritonOptions(
                name=f"{args.preset}_{suffix}", backend="python", threads=args.threads, max_batch=args.max_batch,
                max_queue_delay_us=args.queue_delay_us, dynamic_batching=dynamic), force=True)
        note = args.note or (f"{args.preset} (discrete sampler, random weights), Python backend + ONNX Runtime "
                             f"({args.threads} threads, 1 instance, max_batch_size {args.max_batch}, queue delay "
                             f"{args.queue_delay_us} us) on the nvidia-pytriton tritonserver, clients on the same "
                             "machine; the 2 cores were shared with a model-training job")
        with LocalTriton(repository, stop_with_parent=True) as server:
            command = [sys.executable, "-m", "rtdetr_export", "serve-bench", f"grpc://{server.grpc_url}",
                       "--model", f"{args.preset}_dyn", "--model", f"{args.preset}_nodyn",
                       "--clients", str(args.clients), "--seconds", str(args.seconds), "--timeout", "120",
                       "--note", note, "--report", str(out), "--force"]
            subprocess.run(command, cwd=REPO, check=True)


if __name__ == "__main__":
    main()
