"""Build a TensorRT engine from one of our precision ONNX files: one code path for TensorRT 10.x and 11.x.

Precision lives in the graph (FP16 casts, INT8 Q/DQ), so the network is strongly typed and no precision
builder flag or calibrator is used (TensorRT 10 deprecated them, 11 removed them), nor ``build_engine`` or
``max_workspace_size`` (removed in TensorRT 10.0). Pure helpers (options, optimisation-profile shapes) need no
TensorRT.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rtdetr_export.artifact import GraphOptions, IODescription
from rtdetr_export.errors import MissingDependencyError, RTDetrExportError
from rtdetr_export.files import atomic_output
from rtdetr_export.model.config import SizeRange, size_text

INSTALL_HINT = ("install it with `pip install tensorrt` on a machine with an NVIDIA GPU and driver "
                "(TensorRT 10 or 11; docs/precision.md)")
MAX_OPT_LEVEL = 5


@dataclass
class BuildOptions:
    """What ``rtdetr-export trt`` exposes for the builder."""

    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1
    workspace_mib: int = 4096
    timing_cache: str | None = None
    builder_optimization_level: int = 3
    # The profile's input heights and widths, for a dynamic-size ONNX file (None: the file's fixed size).
    size_range: SizeRange | None = None

    def validate(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise RTDetrExportError(f"batch profile must satisfy 1 <= min <= opt <= max, got min {self.min_batch}, "
                                    f"opt {self.opt_batch}, max {self.max_batch}")
        if self.workspace_mib < 1:
            raise RTDetrExportError(f"--workspace must be at least 1 MiB, got {self.workspace_mib}")
        if not 0 <= self.builder_optimization_level <= MAX_OPT_LEVEL:
            raise RTDetrExportError(f"--builder-opt-level must be in 0..{MAX_OPT_LEVEL}, "
                                    f"got {self.builder_optimization_level}")
        if self.timing_cache is not None and Path(self.timing_cache).is_dir():
            raise RTDetrExportError(f"--timing-cache {self.timing_cache} is a folder; give a file name")

    @property
    def dynamic(self) -> bool:
        return self.min_batch != self.max_batch


def _dynamic(dim: Any) -> bool:
    return isinstance(dim, str) or dim in (0, None)


def _spatial_profile(name: str, dims: list[Any], options: BuildOptions) -> dict[str, list[int]] | None:
    """Min/opt/max [height, width] of an image input whose height and width are graph dimensions (None if fixed)."""
    spatial = [i for i, d in enumerate(dims[1:], start=1) if _dynamic(d)]
    if not spatial:
        if options.size_range is not None and len(dims) == 4:
            raise RTDetrExportError(f"input {name} has a fixed size {size_text(tuple(dims[2:]))} (a fixed-size "
                                    "export); drop the profile's sizes or export with --dynamic-size")
        return None
    if len(dims) != 4 or spatial != [2, 3]:
        raise RTDetrExportError(f"input {name} has a dynamic dimension other than the batch, height and width: {dims}")
    if options.size_range is None:
        raise RTDetrExportError(f"input {name} has a dynamic height and width: give the profile's sizes "
                                "(--min-size, --opt-size, --max-size)")
    r = options.size_range
    return {"min": list(r.min), "opt": list(r.opt), "max": list(r.max)}


def profile_shapes(io: IODescription, options: BuildOptions) -> dict[str, dict[str, list[int]]]:
    """Min/opt/max shape of every graph input for one optimisation profile over the batch and, for a
    dynamic-size file, the images' height and width.

    ``io`` is an ONNX I/O description (``io_description``): a symbolic (string) leading dimension is the batch
    and takes ``options``' batch range; symbolic height and width of a [N, 3, H, W] input take
    ``options.size_range``; any other symbolic dimension is unsupported. A static batch must equal the
    requested profile.
    """
    shapes = {}
    for value in io.inputs:
        dims = list(value.shape or ())
        if not dims:
            raise RTDetrExportError(f"input {value.name} is a scalar (or of unknown shape); our graphs have a batch "
                                    "dimension")
        spatial = _spatial_profile(value.name, dims, options)
        if _dynamic(dims[0]):
            batch = {"min": options.min_batch, "opt": options.opt_batch, "max": options.max_batch}
        else:
            if (options.min_batch, options.opt_batch, options.max_batch) != (dims[0],) * 3:
                raise RTDetrExportError(f"the ONNX file has a static batch of {dims[0]} (input {value.name}); "
                                        "export with --dynamic-batch for a batch profile, or set min/opt/max to "
                                        f"{dims[0]}")
            batch = {key: int(dims[0]) for key in ("min", "opt", "max")}
        # [N, 3, H, W] of a dynamic-size input: channels fixed, height and width from the size range.
        fixed = [int(d) for d in (dims[1:] if spatial is None else dims[1:2])]
        shapes[value.name] = {key: [batch[key], *fixed, *(spatial[key] if spatial else [])]
                                 for key in ("min", "opt", "max")}
    return shapes


# TensorRT's TopK layer takes K <= 3840 (ITopKLayer; 10.x and 11.x): a detections head with a larger top-k
# parses but fails to build.
MAX_TOPK = 3840
# GridSample from opset 20 (the bilinear sampler exported at --opset 20+) gives wrong results on TensorRT 10.13
# and 11.1; opset 16-19 GridSample is right.
GRID_SAMPLE_MAX_OPSET = 19


def check_tensorrt_graph(options: GraphOptions) -> None:
    """Refuse graph options that TensorRT cannot build or builds wrong (``options.sampler`` resolved)."""
    if options.head == "detections" and options.top_k > MAX_TOPK:
        raise RTDetrExportError(f"--top-k {options.top_k} is above TensorRT's TopK limit of {MAX_TOPK}")
    # Only a graph with GridSample in it is affected: the gather samplers read the same points without it.
    if options.sampler is not None and options.sampler.has_gridsample and options.opset > GRID_SAMPLE_MAX_OPSET:
        raise RTDetrExportError(f"--opset {options.opset} with the GridSample sampler computes wrong results on "
                                f"TensorRT 10.13 and 11.1: use --opset {GRID_SAMPLE_MAX_OPSET}, or --bilinear-op "
                                "gather (no GridSample in the graph)")


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or MissingDependencyError naming how to install it."""
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError(f"TensorRT is not installed (no Python package `tensorrt`): {INSTALL_HINT}") \
            from None
    if not hasattr(tensorrt, "Builder"):  # the PyPI placeholder without libraries
        raise MissingDependencyError(f"the installed `tensorrt` package has no TensorRT libraries: {INSTALL_HINT}")
    return tensorrt


def tensorrt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def _parser_errors(parser: Any) -> str:
    """Every parser error with the ONNX node it names (TensorRT 10+ reports the node name and op)."""
    lines = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        node = error.node_name() if hasattr(error, "node_name") else f"#{error.node()}"
        op = f" ({error.node_operator()})" if hasattr(error, "node_operator") else ""
        lines.append(f"node {node or '?'}{op}: {error.desc()}")
    return "; ".join(lines) or "no error reported"


def build_serialized_engine(onnx_path: str | Path, io: IODescription, options: BuildOptions,
                            log: Callable[[str], None] = lambda message: None) -> bytes:
    """Parse the ONNX file into a strongly typed network and build it; returns the serialized engine."""
    trt = import_tensorrt()
    options.validate()
    shapes = profile_shapes(io, options)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 11 is always strongly typed and ignores (deprecates) the flag; TensorRT 10 needs it.
    flags = 0 if tensorrt_major(trt) >= 11 else 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        raise RTDetrExportError(f"TensorRT cannot parse {Path(onnx_path).name}: {_parser_errors(parser)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    config.builder_optimization_level = options.builder_optimization_level
    if hasattr(trt.BuilderFlag, "TF32"):
        # FP32 layers stay FP32: TF32 would cost FP32 engines their 1e-4 parity. FP16/INT8 come from the graph.
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    for name, shape in shapes.items():
        profile.set_shape(name, shape["min"], shape["opt"], shape["max"])
    config.add_optimization_profile(profile)

    cache_path = Path(options.timing_cache) if options.timing_cache else None
    cache_bytes = cache_path.read_bytes() if cache_path and cache_path.is_file() else b""
    attach_timing_cache(config, cache_bytes, log)

    log(f"building the engine (TensorRT {trt.__version__}, optimisation level {options.builder_optimization_level}, "
        f"workspace {options.workspace_mib} MiB)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RTDetrExportError("TensorRT failed to build the engine (its log above says why)")
    if cache_path is not None:
        cache = config.get_timing_cache()
        if cache is None:  # the binding returns None when no cache is attached
            log("warning: TensorRT returned no timing cache; none saved")
        else:
            _save_timing_cache(cache_path, bytes(cache.serialize()))
            log(f"timing cache saved to {cache_path}")
    return bytes(serialized)


def attach_timing_cache(config: Any, cache_bytes: bytes, log: Callable[[str], None]) -> None:
    """Attach the timing cache read from a file, or a new one when TensorRT refuses it.

    A cache written by another TensorRT version or GPU is refused: ``create_timing_cache`` returns None or
    ``set_timing_cache`` returns False (``ignore_mismatch`` stays False: mismatched timings would be wrong).
    The build then starts from an empty cache, which is saved over the stale file afterwards.
    """
    cache = config.create_timing_cache(cache_bytes) if cache_bytes else None
    if cache is not None and config.set_timing_cache(cache, False):
        return
    if cache_bytes:
        log("warning: the timing cache was made by another TensorRT version or GPU; starting a new one")
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, False):
        raise RTDetrExportError("TensorRT could not create an empty timing cache")


def _save_timing_cache(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)


__all__ = ["BuildOptions", "build_serialized_engine", "check_tensorrt_graph", "import_tensorrt", "profile_shapes"]
