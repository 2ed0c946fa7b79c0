"""From a verified precision ONNX file to a verified, timed engine: build, check against PyTorch, record.

The engine is written to a temporary file and renamed only after it matched the PyTorch reference with the
thresholds of its precision; its sidecar (``OUT.engine.json``) holds the TensorRT version, GPU, precision,
profile, I/O tensors, parity and latency.
"""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from rtdetr_export import __version__
from rtdetr_export.backends.tensorrt.builder import BuildOptions, build_serialized_engine, import_tensorrt
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export.provenance import load_artifact_provenance
from rtdetr_export.files import atomic_output, check_output, file_sha256, write_text_atomic

FORMAT = "rtdetr-export/tensorrt-engine"


def engine_sidecar_path(engine: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json`` (``model.json`` belongs to ``model.onnx``)."""
    return Path(str(engine) + ".json")


def verification_batches(options: BuildOptions) -> list[int]:
    """Batch sizes the engine is checked at: each end of the profile (once if they coincide)."""
    return sorted({options.min_batch, options.max_batch})


def engine_record(*, trt_version: str, gpu: dict[str, Any], onnx_path: str | Path, onnx_provenance: dict[str, Any],
                  options: BuildOptions, profile: dict[str, Any], io_tensors: list[dict[str, Any]],
                  verification: dict[str, Any] | None, latency: dict[str, Any] | None,
                  build_seconds: float) -> dict[str, Any]:
    """The engine's sidecar content (pure: everything it records is passed in)."""
    onnx_path = Path(onnx_path)
    return {
        "format": FORMAT,
        "schema_version": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tool": {"name": "rtdetr-export", "version": __version__},
        "tensorrt": trt_version,
        "gpu": gpu,
        "precision": onnx_provenance.get("precision"),
        "precision_recipe": onnx_provenance.get("precision_recipe"),
        "onnx": {"file": onnx_path.name, "sha256": file_sha256(onnx_path),
                 "verification_passed": (onnx_provenance.get("verification") or {}).get("passed")},
        "model": onnx_provenance.get("model"),
        "method": onnx_provenance.get("method"),
        "input_size": onnx_provenance.get("input_size"),
        # The tensor contract as the ONNX sidecar states it, so every consumer (predict, the C++ engines)
        # reads an engine's sidecar the same way as an ONNX file's.
        "classes": onnx_provenance.get("classes"),
        "export": onnx_provenance.get("export"),
        "io": onnx_provenance.get("io"),
        "head": (onnx_provenance.get("export") or {}).get("head"),
        "build": {**asdict(options), "strongly_typed": True, "seconds": round(build_seconds, 1)},
        "profile": profile,
        "io_tensors": io_tensors,
        "verification": verification,
        "latency": latency,
    }


def gpu_description(device: Any) -> dict[str, Any]:
    """Name and compute capability of a torch CUDA device."""
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return {"name": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}


@dataclass
class EngineResult:
    path: Path
    sidecar: Path
    record: dict[str, Any]


def build_engine_artifact(onnx_path: str | Path, output: str | Path, model: Any, options: BuildOptions,
                          images: str | Path | None = None, cuda_graph: bool = False, warmup: int = 50,
                          iterations: int = 200, force: bool = False,
                          log: Callable[[str], None] = lambda message: None) -> EngineResult:
    """Build OUTPUT.engine from one of our ONNX files, verify it against ``model`` and time it."""
    from rtdetr_export.backends.tensorrt.builder import profile_shapes
    from rtdetr_export.backends.tensorrt.latency import measure_latency
    from rtdetr_export.backends.tensorrt.runner import TensorRTRunner, cuda_device
    from rtdetr_export.verify.compare import thresholds_for
    from rtdetr_export.verify.inputs import verification_images
    from rtdetr_export.verify.reference import ReferenceRunner
    from rtdetr_export.verify.verification import compare_runners, make_feed

    options.validate()
    output = check_output(output, force, suffix=".engine")
    sidecar = check_output(engine_sidecar_path(output), force)
    provenance = load_artifact_provenance(onnx_path)
    export = provenance["export"]
    head, top_k, precision = export["head"], export.get("top_k") or 300, provenance["precision"]
    profile = profile_shapes(provenance["io"], options)
    trt = import_tensorrt()
    device = cuda_device()

    started = time.perf_counter()
    serialized = build_serialized_engine(onnx_path, provenance["io"], options, log)
    build_seconds = time.perf_counter() - started
    size = tuple(provenance["input_size"])
    with atomic_output(output) as tmp:
        tmp.write_bytes(serialized)
        runner = TensorRTRunner(serialized, device=device.index or 0, cuda_graph=cuda_graph)
        batches = verification_batches(options)
        log(f"verifying the engine against PyTorch ({precision}, batch {', '.join(map(str, batches))})")
        feeds = [make_feed(head, *verification_images(b, size, images, seed=i)) for i, b in enumerate(batches)]
        verification = compare_runners(ReferenceRunner(model, head, top_k), runner, head, feeds,
                                       thresholds_for(precision))
        verification.update({"reference": "torch-fp32-cpu", "candidate": "tensorrt", "precision": precision,
                             "inputs": str(images) if images else "synthetic"})
        if not verification["passed"]:
            raise RTDetrExportError("engine verification failed: " + "; ".join(verification["failures"]))
        log(f"timing at batch {options.opt_batch} ({warmup} warm-up, {iterations} timed runs)")
        with runner:
            feed = make_feed(head, *verification_images(options.opt_batch, size, images, seed=99))
            latency = measure_latency(runner, feed, warmup, iterations)
            io_tensors = runner.describe_io()
        record = engine_record(trt_version=str(trt.__version__), gpu=gpu_description(device), onnx_path=onnx_path,
                               onnx_provenance=provenance, options=options, profile=profile, io_tensors=io_tensors,
                               verification=verification, latency=latency, build_seconds=build_seconds)
    write_text_atomic(sidecar, json.dumps(record, indent=2) + "\n")
    return EngineResult(output, sidecar, record)


def check_engine_outputs(output: str | Path, force: bool) -> tuple[Path, Path]:
    """Validate OUT.engine and its sidecar up front; returns both paths."""
    output = check_output(output, force, suffix=".engine")
    return output, check_output(engine_sidecar_path(output), force)


__all__ = ["EngineResult", "build_engine_artifact", "check_engine_outputs", "engine_record", "engine_sidecar_path"]
