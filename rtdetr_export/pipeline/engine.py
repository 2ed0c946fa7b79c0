"""The TensorRT job: a verified precision ONNX (exported here or given), then build -> verify -> time -> write.

The engine is written to a temporary file and renamed only after it matched the PyTorch reference with the
thresholds of its precision; its sidecar (``OUT.engine.json``, ``artifact.sidecar_path``) holds the TensorRT
version, GPU, precision, profile, I/O tensors, parity and latency.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from rtdetr_export.artifact import (EngineRecord, GraphOptions, Latency, OnnxRecord, OnnxSource, PrecisionOptions,
                                    ProfileShape, make_feed, open_artifact, sidecar_path, write_sidecar)
from rtdetr_export.backends.tensorrt.builder import (BuildOptions, build_serialized_engine, check_tensorrt_graph,
                                                    import_tensorrt, profile_shapes)
from rtdetr_export.errors import MissingDependencyError, RTDetrExportError
from rtdetr_export.files import atomic_output, check_output, file_sha256
from rtdetr_export.imaging.inputs import verification_images
from rtdetr_export.model import RTDETRv2, SizeRange
from rtdetr_export.model.config import size_text
from rtdetr_export.pipeline.onnx import OnnxExportOptions, export_onnx
from rtdetr_export.pipeline.verification import recorded_or, reference_model
from rtdetr_export.verify import Verification, VerificationPlan, verify_candidate

Log = Callable[[str], None]
Size = tuple[int, int]  # (height, width)


def engine_batches(options: BuildOptions) -> list[int]:
    """Batch sizes an engine is checked at: each end of its profile (once if they coincide)."""
    return sorted({options.min_batch, options.max_batch})


def gpu_description(device: Any) -> dict[str, Any]:
    """Name and compute capability of a torch CUDA device."""
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return {"name": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}


@dataclass
class EngineResult:
    path: Path
    sidecar: Path
    record: EngineRecord


@dataclass
class TimingOptions:
    """How an engine is timed after it verified: warm-up runs, timed runs, CUDA-graph replay."""

    warmup: int = 50
    iterations: int = 200
    cuda_graph: bool = False

    def validate(self) -> None:
        if self.warmup < 0 or self.iterations < 1:
            raise RTDetrExportError("--warmup must be >= 0 and --iterations >= 1")


def check_engine_outputs(output: str | Path, force: bool) -> tuple[Path, Path]:
    """Validate OUT.engine and its sidecar up front; returns both paths."""
    output = check_output(output, force, suffix=".engine")
    return output, check_output(sidecar_path(output), force)


def engine_record(onnx_path: Path, onnx: OnnxRecord, options: BuildOptions, *, trt_version: str,
                  gpu: dict[str, Any], profile: dict[str, Any], io_tensors: list[dict[str, Any]],
                  verification: Verification, latency: dict[str, Any], build_seconds: float) -> EngineRecord:
    """The engine's record: the ONNX file's contract, its input size (range) narrowed to the profile's, and what
    TensorRT built and measured (pure: everything it records is passed in)."""
    size_range = options.size_range
    return EngineRecord.built_from(
        replace(onnx, input_size=size_range.opt if size_range else onnx.input_size, input_size_range=size_range),
        tensorrt=trt_version, gpu=gpu,
        onnx=OnnxSource(onnx_path.name, file_sha256(onnx_path),
                        onnx.verification.passed if onnx.verification else None),
        build={**asdict(options), "size_range": size_range.to_json() if size_range else None, "strongly_typed": True,
               "seconds": round(build_seconds, 1)},
        profile={name: ProfileShape(*(tuple(shape[k]) for k in ("min", "opt", "max"))) for name, shape in profile.items()},
        io_tensors=io_tensors, verification=verification, latency=Latency.from_json(latency, "latency"))


def build_engine_artifact(onnx_path: str | Path, output: str | Path, model: RTDETRv2, options: BuildOptions,
                          images: str | Path | None = None, timing: TimingOptions | None = None,
                          force: bool = False, log: Log = lambda message: None) -> EngineResult:
    """Build OUTPUT.engine from one of our ONNX files, verify it against ``model`` and time it."""
    from rtdetr_export.backends.tensorrt.latency import measure_latency
    from rtdetr_export.backends.tensorrt.runner import TensorRTRunner, cuda_device

    timing = timing or TimingOptions()
    options.validate()
    output, sidecar = check_engine_outputs(output, force)
    onnx_path = Path(onnx_path)
    onnx = open_artifact(onnx_path)
    profile = profile_shapes(onnx.io, options)
    trt = import_tensorrt()
    device = cuda_device()

    started = time.perf_counter()
    serialized = build_serialized_engine(onnx_path, onnx.io, options, log)
    build_seconds = time.perf_counter() - started
    size = options.size_range.opt if options.size_range else onnx.input_size
    graph = replace(onnx.graph_options(), size_range=options.size_range)
    plan = VerificationPlan.for_graph(graph, size, recorded_or(images, onnx, log), engine_batches(options))
    with atomic_output(output) as tmp:
        tmp.write_bytes(serialized)
        runner = TensorRTRunner(serialized, device=device.index or 0, cuda_graph=timing.cuda_graph)
        log(f"verifying the engine against PyTorch ({onnx.precision}, {plan.summary()})")
        verification = verify_candidate(model, runner, plan, onnx.precision, name="tensorrt")
        if not verification.passed:
            raise RTDetrExportError("engine verification failed: " + "; ".join(verification.failures))
        log(f"timing at batch {options.opt_batch} ({timing.warmup} warm-up, {timing.iterations} timed runs)")
        with runner:
            feed = make_feed(onnx.head, *verification_images(options.opt_batch, size, images, seed=99))
            latency = measure_latency(runner, feed, timing.warmup, timing.iterations)
            io_tensors = runner.describe_io()
        record = engine_record(onnx_path, onnx, options, trt_version=str(trt.__version__),
                               gpu=gpu_description(device), profile=profile, io_tensors=io_tensors,
                               verification=verification, latency=latency, build_seconds=build_seconds)
    write_sidecar(sidecar, record)
    return EngineResult(output, sidecar, record)


@dataclass
class EngineJob:
    """Everything ``rtdetr-export trt`` asks for: where the ONNX comes from, its precision, the build and timing.

    ``onnx`` given: build from that file of ours (its precision and graph options; ``model_path`` names its
    checkpoint). Else the model is exported here to OUT.onnx with ``precision`` and ``graph`` first (its batch
    and size range come from the build profile).
    """

    output: str
    onnx: str | None = None
    precision: PrecisionOptions = field(default_factory=PrecisionOptions)
    precision_asked: bool = False  # --fp16/--int8 given (with --onnx: the file must have that precision)
    graph: GraphOptions = field(default_factory=GraphOptions)
    build: BuildOptions = field(default_factory=BuildOptions)
    images: str | None = None
    timing: TimingOptions = field(default_factory=TimingOptions)
    onnx_only: bool = False
    force: bool = False
    # With ``onnx``: profile sizes (min, opt, max) asked for in place of the file's range (None: the file's).
    # Without: ``build.size_range`` is both the export's range and the profile's.
    profile_sizes: tuple[Size | None, Size | None, Size | None] = (None, None, None)

    def validate(self, model_chosen: bool) -> None:
        """Reject contradictory requests before any work; ``model_chosen``: --preset/--method/--image-size given."""
        self.build.validate()
        self.timing.validate()
        if self.onnx is None:
            # What can be checked before the model loads (top-k; the sampler if already given): the CLI's sampler
            # is known once the model is, and run_engine_job checks the graph options again then.
            check_tensorrt_graph(self.graph)
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

    def export_options(self, model: RTDETRv2) -> OnnxExportOptions:
        """The ONNX export this job makes for ``model``: its graph options with the build profile's batch and
        size range (the ONNX file's range is the profile's)."""
        return OnnxExportOptions(**{**vars(self.graph), "batch": self.build.min_batch,
                                    "dynamic_batch": self.build.dynamic, "size_range": self.build.size_range,
                                    "sampler": self.graph.sampler_for(model.config.decoder_method)},
                                 images=self.images, precision=self.precision)


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


def _given_onnx(job: EngineJob, model_path: str | None, log: Log) -> tuple[Path, RTDETRv2]:
    """The --onnx file, checked for this job, and its reference model."""
    record = open_artifact(job.onnx)
    if not isinstance(record, OnnxRecord):
        raise RTDetrExportError(f"{job.onnx} is not an ONNX file; --onnx takes a file made by `rtdetr-export onnx`")
    if job.precision_asked and record.precision != job.precision.target:
        target = job.precision.target
        raise RTDetrExportError(f"{job.onnx} is {record.precision}, not {target}: make a {target} file "
                                f"with `rtdetr-export onnx --precision {target}`, or omit --onnx")
    check_tensorrt_graph(record.graph_options())
    job.build.size_range = profile_size_range(record.input_size_range, job.profile_sizes, job.onnx)
    return Path(job.onnx), reference_model(record, model_path, log)


def run_engine_job(job: EngineJob, load_model: Callable[[], RTDETRv2], model_path: str | None = None,
                   log: Log = lambda message: None) -> EngineResult | Path:
    """Do the job: returns the engine's result, or the verified ONNX path when ``job.onnx_only``.

    ``load_model`` builds the reference when the ONNX is exported here; with ``job.onnx`` the reference comes
    from the file's record (and ``model_path``, its checkpoint). The TensorRT graph check runs once, on the
    graph options the ONNX file has (its record's, or the export's).
    """
    engine_path, _ = check_engine_outputs(job.output, job.force)
    if job.onnx is not None:
        onnx_path, model = _given_onnx(job, model_path, log)
    else:
        onnx_path, model = engine_path.with_suffix(".onnx"), load_model()
        options = job.export_options(model)
        check_tensorrt_graph(options)
        export_onnx(model, onnx_path, options, force=job.force, log=log)
        if job.onnx_only:
            return onnx_path
    try:
        import_tensorrt()
    except MissingDependencyError as exc:
        raise MissingDependencyError(f"{exc}; the verified {onnx_path.name} is ready to build there") from None
    return build_engine_artifact(onnx_path, engine_path, model, job.build, job.images, job.timing, job.force, log)
