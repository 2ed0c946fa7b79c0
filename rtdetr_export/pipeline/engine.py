"""The TensorRT job: a verified precision ONNX (exported here or given), then build -> verify -> time -> write.

The engine is written to a temporary file and renamed only after it matched the PyTorch reference with the
thresholds of its precision; its sidecar (``OUT.engine.json``, ``artifact.sidecar_path``) holds the TensorRT
version, GPU, precision, profile, I/O tensors, parity and latency.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from rtdetr_export.artifact import (ENGINE_FORMAT, input_size_range, make_feed, provenance_header, read_provenance,
                                   sidecar_path)
from rtdetr_export.backends.tensorrt.builder import (BuildOptions, build_serialized_engine, check_tensorrt_graph,
                                                    import_tensorrt)
from rtdetr_export.errors import MissingDependencyError, RTDetrExportError
from rtdetr_export.export.torch_export import DEFAULT_BILINEAR_OP, DEFAULT_OPSET
from rtdetr_export.files import atomic_output, check_output, file_sha256, write_text_atomic
from rtdetr_export.imaging.inputs import verification_images
from rtdetr_export.model import RTDETRv2, SizeRange
from rtdetr_export.pipeline.onnx import OnnxExportOptions, export_onnx
from rtdetr_export.pipeline.verification import reference_model
from rtdetr_export.precision import PrecisionOptions
from rtdetr_export.model.config import size_text
from rtdetr_export.verify import Verification, compare_runners, thresholds_for
from rtdetr_export.verify.verification import verification_plan
from rtdetr_export.verify.reference import ReferenceRunner

Log = Callable[[str], None]
Size = tuple[int, int]  # (height, width)


def verification_batches(options: BuildOptions) -> list[int]:
    """Batch sizes the engine is checked at: each end of the profile (once if they coincide)."""
    return sorted({options.min_batch, options.max_batch})


def engine_record(*, trt_version: str, gpu: dict[str, Any], onnx_path: str | Path, onnx_provenance: dict[str, Any],
                  options: BuildOptions, profile: dict[str, Any], io_tensors: list[dict[str, Any]],
                  verification: Verification | dict[str, Any] | None, latency: dict[str, Any] | None,
                  build_seconds: float) -> dict[str, Any]:
    """The engine's sidecar content (pure: everything it records is passed in)."""
    onnx_path = Path(onnx_path)
    if isinstance(verification, Verification):
        verification = verification.to_json()
    return {
        **provenance_header(ENGINE_FORMAT),
        "tensorrt": trt_version,
        "gpu": gpu,
        "precision": onnx_provenance.get("precision"),
        "precision_recipe": onnx_provenance.get("precision_recipe"),
        "onnx": {"file": onnx_path.name, "sha256": file_sha256(onnx_path),
                 "verification_passed": (onnx_provenance.get("verification") or {}).get("passed")},
        "model": onnx_provenance.get("model"),
        "method": onnx_provenance.get("method"),
        "sampler": onnx_provenance.get("sampler"),
        # A dynamic-size engine takes the sizes of its profile (which may be narrower than its ONNX file's range).
        "input_size": list(options.size_range.opt) if options.size_range else onnx_provenance.get("input_size"),
        "input_size_range": options.size_range.to_json() if options.size_range else None,
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


def check_engine_outputs(output: str | Path, force: bool) -> tuple[Path, Path]:
    """Validate OUT.engine and its sidecar up front; returns both paths."""
    output = check_output(output, force, suffix=".engine")
    return output, check_output(sidecar_path(output), force)


def build_engine_artifact(onnx_path: str | Path, output: str | Path, model: RTDETRv2, options: BuildOptions,
                          images: str | Path | None = None, cuda_graph: bool = False, warmup: int = 50,
                          iterations: int = 200, force: bool = False, log: Log = lambda message: None) -> EngineResult:
    """Build OUTPUT.engine from one of our ONNX files, verify it against ``model`` and time it."""
    from rtdetr_export.backends.tensorrt.builder import profile_shapes
    from rtdetr_export.backends.tensorrt.latency import measure_latency
    from rtdetr_export.backends.tensorrt.runner import TensorRTRunner, cuda_device

    options.validate()
    output, sidecar = check_engine_outputs(output, force)
    provenance = read_provenance(onnx_path)
    export = provenance["export"]
    head, top_k, precision = export["head"], export.get("top_k") or 300, provenance["precision"]
    profile = profile_shapes(provenance["io"], options)
    trt = import_tensorrt()
    device = cuda_device()

    started = time.perf_counter()
    serialized = build_serialized_engine(onnx_path, provenance["io"], options, log)
    build_seconds = time.perf_counter() - started
    size = options.size_range.opt if options.size_range else tuple(provenance["input_size"])
    with atomic_output(output) as tmp:
        tmp.write_bytes(serialized)
        runner = TensorRTRunner(serialized, device=device.index or 0, cuda_graph=cuda_graph)
        plan = verification_plan(verification_batches(options), size, options.size_range)
        log(f"verifying the engine against PyTorch ({precision}, " + ", ".join(
            f"batch {b} at {size_text(s)}" for b, s in plan) + ")")
        feeds = [make_feed(head, *verification_images(b, s, images, seed=i)) for i, (b, s) in enumerate(plan)]
        verification = compare_runners(ReferenceRunner(model, head, top_k), runner, head, feeds,
                                       thresholds_for(precision), "tensorrt", precision,
                                       str(images) if images else "synthetic")
        if options.size_range is not None:
            for run, (_, s) in zip(verification.runs, plan):
                run.input_size = list(s)
        if not verification.passed:
            raise RTDetrExportError("engine verification failed: " + "; ".join(verification.failures))
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


@dataclass
class EngineJob:
    """Everything ``rtdetr-export trt`` asks for: where the ONNX comes from, its precision, the build and timing.

    ``onnx`` given: build from that file of ours (its precision; ``model_path`` names its checkpoint). Else the
    model is exported here to OUT.onnx with ``precision`` and the graph options first.
    """

    output: str
    onnx: str | None = None
    precision: PrecisionOptions = field(default_factory=PrecisionOptions)
    precision_asked: bool = False  # --fp16/--int8 given (with --onnx: the file must have that precision)
    head: str = "raw"
    top_k: int = 300
    opset: int = DEFAULT_OPSET
    bilinear_op: str = DEFAULT_BILINEAR_OP
    build: BuildOptions = field(default_factory=BuildOptions)
    images: str | None = None
    cuda_graph: bool = False
    warmup: int = 50
    iterations: int = 200
    onnx_only: bool = False
    force: bool = False
    # With ``onnx``: profile sizes (min, opt, max) asked for in place of the file's range (None: the file's).
    # Without: ``build.size_range`` is both the export's range and the profile's.
    profile_sizes: tuple[Size | None, Size | None, Size | None] = (None, None, None)

    def validate(self, model_chosen: bool) -> None:
        """Reject contradictory requests before any work; ``model_chosen``: --preset/--method/--image-size given."""
        self.build.validate()
        if self.head == "detections" and self.onnx is None:
            check_tensorrt_graph(self.opset, "discrete", self.head, self.top_k)  # the sampler is known later
        if self.warmup < 0 or self.iterations < 1:
            raise RTDetrExportError("--warmup must be >= 0 and --iterations >= 1")
        if self.onnx is None:
            self.precision.validate()
            return
        if self.precision != PrecisionOptions(self.precision.target):
            raise RTDetrExportError("calibration and exclusion flags shape the precision ONNX; with --onnx it is "
                                    "already made (use them with `rtdetr-export onnx`)")
        if self.onnx_only:
            raise RTDetrExportError("--onnx-only makes the precision ONNX; with --onnx there is nothing to make")
        if model_chosen:
            raise RTDetrExportError("with --onnx the model comes from the file's provenance: drop --preset, --method "
                                    "and --image-size (--model names the checkpoint)")


def profile_size_range(file_range: SizeRange | None, asked: tuple[Size | None, Size | None, Size | None],
                       name: str) -> SizeRange | None:
    """The profile's sizes for an ONNX file: its recorded range, with any of (min, opt, max) ``asked`` for in its
    place if the file's range holds them; one-line error for sizes a fixed-size file or the range cannot take."""
    if not any(asked):
        return file_range
    if file_range is None:
        raise RTDetrExportError(f"{name} is a fixed-size export: it has no size range for --min-size/--opt-size/"
                                "--max-size (export it with --dynamic-size)")
    low, opt, high = asked
    asked = SizeRange(low or file_range.min, opt or file_range.opt, high or file_range.max)
    if not (file_range.contains(asked.min) and file_range.contains(asked.max)):
        raise RTDetrExportError(f"profile sizes {size_text(asked.min)}..{size_text(asked.max)} are outside {name}'s "
                                f"range {file_range}")
    return asked


def fp16_or_int8(fp16: bool, int8: bool) -> str | None:
    """The precision the --fp16/--int8 flags ask for (None: neither)."""
    if fp16 and int8:
        raise RTDetrExportError("--fp16 and --int8 are exclusive: --int8 already runs the layers it does not quantize "
                                "in FP16 (--int8-float fp32 for FP32; docs/precision.md, 'FP16 and INT8 together')")
    return "fp16" if fp16 else "int8" if int8 else None


def run_engine_job(job: EngineJob, load_model: Callable[[], RTDETRv2], model_path: str | None = None,
                   log: Log = lambda message: None) -> EngineResult | Path:
    """Do the job: returns the engine's result, or the verified ONNX path when ``job.onnx_only``.

    ``load_model`` builds the reference when the ONNX is exported here; with ``job.onnx`` the reference comes
    from the file's provenance (and ``model_path``, its checkpoint).
    """
    engine_path, _ = check_engine_outputs(job.output, job.force)
    if job.onnx is not None:
        provenance = read_provenance(job.onnx)
        if job.precision_asked and provenance["precision"] != job.precision.target:
            target = job.precision.target
            raise RTDetrExportError(f"{job.onnx} is {provenance['precision']}, not {target}: make a {target} file "
                                    f"with `rtdetr-export onnx --precision {target}`, or omit --onnx")
        export = provenance["export"]
        check_tensorrt_graph(export["opset"], provenance["method"], export["head"], export.get("top_k") or 0)
        job.build.size_range = profile_size_range(input_size_range(provenance), job.profile_sizes, job.onnx)
        onnx_path, model = Path(job.onnx), reference_model(provenance, model_path, log)
    else:
        onnx_path, model = engine_path.with_suffix(".onnx"), load_model()
        check_tensorrt_graph(job.opset, model.config.decoder_method, job.head, job.top_k)
        # Exported here: the ONNX file's range is the profile's.
        options = OnnxExportOptions(opset=job.opset, batch=job.build.min_batch, dynamic_batch=job.build.dynamic,
                                    head=job.head, top_k=job.top_k, images=job.images, precision=job.precision,
                                    bilinear_op=job.bilinear_op, size_range=job.build.size_range)
        export_onnx(model, onnx_path, options, force=job.force, log=log)
        if job.onnx_only:
            return onnx_path
    try:
        import_tensorrt()
    except MissingDependencyError as exc:
        raise MissingDependencyError(f"{exc}; the verified {onnx_path.name} is ready to build there") from None
    return build_engine_artifact(onnx_path, engine_path, model, job.build, job.images, job.cuda_graph, job.warmup,
                                 job.iterations, job.force, log)
