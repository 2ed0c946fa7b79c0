"""Triton model configurations from an artifact's record, as Triton's own protobuf (``model_config_pb2``).

Everything a ``config.pbtxt`` states comes from the record: tensor names, data types and dims (``io``, and an
engine's ``io_tensors`` for the types TensorRT really binds), the batch dimension (dynamic ONNX batch, or the
engine's optimisation profile), and the record itself, copied into ``parameters`` so a served model can be
traced back to the file and the export that made it. The text is written and parsed by protobuf's
``text_format``, never formatted by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rtdetr_export.artifact import ENGINE_SUFFIXES, PREFIX, ArtifactRecord, EngineRecord, IODescription, TensorSpec
from rtdetr_export.errors import MissingDependencyError, RTDetrExportError
from rtdetr_export.model.heads import OUTPUTS

BACKENDS = ("auto", "tensorrt", "onnxruntime", "openvino", "python")
PYTHON_RUNTIMES = ("onnxruntime", "openvino")
DEFAULT_MAX_BATCH = 8  # a dynamic-batch ONNX file has no profile; this bounds what Triton may form
DATA_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32",
              "uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "bool": "TYPE_BOOL"}
# Model file name and platform/backend per serving backend (Triton's defaults, so no default_model_filename).
SERVED = {"tensorrt": ("model.plan", {"platform": "tensorrt_plan"}),
          "onnxruntime": ("model.onnx", {"platform": "onnxruntime_onnx", "backend": "onnxruntime"}),
          "openvino": ("model.onnx", {"backend": "openvino"}),
          "python": ("model.onnx", {"backend": "python"})}


def pb2() -> Any:
    """Triton's model configuration protobuf module (from tritonclient)."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        raise MissingDependencyError("Triton configs need tritonclient: pip install 'tritonclient[http,grpc]>=2.40'") \
            from None
    return model_config_pb2


def to_text(config: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def parse_config(text: str) -> Any:
    """A ``config.pbtxt`` parsed into Triton's ``ModelConfig`` (raises protobuf's ParseError if it is not one)."""
    from google.protobuf import text_format

    return text_format.Parse(text, pb2().ModelConfig())


@dataclass(frozen=True)
class TritonOptions:
    """What ``rtdetr-export triton`` asks for; ``None`` max_batch: the profile's maximum (engines) or 8."""

    name: str | None = None
    max_batch: int | None = None
    instances: int = 1
    max_queue_delay_us: int = 100
    dynamic_batching: bool = True
    backend: str = "auto"
    python_runtime: str = "onnxruntime"
    threads: int | None = None  # intra-op threads of the Python backend's runtime (None: the runtime's default)
    ensemble: bool = False

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise RTDetrExportError(f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.python_runtime not in PYTHON_RUNTIMES:
            raise RTDetrExportError(f"unknown Python-backend runtime {self.python_runtime!r}; choose one of "
                                    f"{', '.join(PYTHON_RUNTIMES)}")
        if self.instances < 1:
            raise RTDetrExportError(f"--instances must be at least 1, got {self.instances}")
        if self.max_batch is not None and self.max_batch < 0:
            raise RTDetrExportError(f"--max-batch must be >= 0, got {self.max_batch}")
        if self.max_queue_delay_us < 0:
            raise RTDetrExportError(f"--max-queue-delay-us must be >= 0, got {self.max_queue_delay_us}")
        if self.threads is not None and self.threads < 1:
            raise RTDetrExportError(f"--threads must be at least 1, got {self.threads}")


@dataclass(frozen=True)
class BatchPlan:
    """How Triton batches one artifact: ``max_batch_size`` (0: no batching, dims carry the static batch),
    the artifact's own batch range, and why (shown as a warning where batching is impossible)."""

    max_batch_size: int
    static_batch: int | None
    preferred: tuple[int, ...]
    warning: str | None = None


def serving_backend(artifact: Path, requested: str) -> str:
    is_engine = artifact.suffix.lower() in ENGINE_SUFFIXES
    if requested == "auto":
        return "tensorrt" if is_engine else "onnxruntime"
    if is_engine and requested != "tensorrt":
        raise RTDetrExportError(f"{artifact} is a TensorRT engine: only --backend tensorrt serves it")
    if not is_engine and requested == "tensorrt":
        raise RTDetrExportError(f"{artifact} is an ONNX file: build an engine with `rtdetr-export trt` for "
                                "--backend tensorrt (an engine is tied to the GPU and TensorRT version it was built on)")
    return requested


def _batch_range(artifact: Path, record: ArtifactRecord) -> tuple[int, int] | None:
    """(min, max) batch the artifact accepts, or None for an unbounded dynamic batch (ONNX)."""
    if isinstance(record, EngineRecord):
        if record.batch_range is None:
            raise RTDetrExportError(f"{artifact}: its sidecar records no optimisation profile for input "
                                    f"{record.io.inputs[0].name}; rebuild it with `rtdetr-export trt`")
        return record.batch_range
    return record.io.inputs[0].batch_range


def plan_batching(artifact: Path, record: ArtifactRecord, options: TritonOptions) -> BatchPlan:
    """``max_batch_size`` within what the artifact accepts, and the preferred batch sizes inside it."""
    limits = _batch_range(artifact, record)
    asked = options.max_batch
    if limits is not None and limits[0] == limits[1]:
        static = limits[0]
        if asked is not None and asked > 1:
            raise RTDetrExportError(f"{artifact} has a static batch of {static}: Triton cannot batch its requests "
                                    f"(--max-batch {asked}); export with --dynamic-batch (or build an engine with a "
                                    "batch profile)")
        return BatchPlan(0, static, (), f"{artifact.name} has a static batch of {static}: max_batch_size 0, every "
                                         f"request must carry exactly {static} image(s) and Triton cannot batch them")
    if limits is not None and limits[0] > 1:
        raise RTDetrExportError(f"{artifact}: the engine profile starts at batch {limits[0]}, but Triton sends "
                                "batches from 1; rebuild it with --min-batch 1")
    top = limits[1] if limits is not None else DEFAULT_MAX_BATCH
    if asked is not None and asked > top and limits is not None:
        raise RTDetrExportError(f"--max-batch {asked} exceeds the engine profile's maximum batch {top}")
    size = top if asked is None else asked
    if size == 0:
        raise RTDetrExportError(f"{artifact.name} has a dynamic batch: give --max-batch >= 1")
    preferred = sorted({b for b in (2, 4, 8, 16, 32, 64) if b <= size} | ({size} if size > 1 else set()))
    profile = record.profile.get(record.io.inputs[0].name) if isinstance(record, EngineRecord) else None
    if profile and 1 < profile.opt[0] <= size:
        preferred = sorted(set(preferred) | {int(profile.opt[0])})
    return BatchPlan(size, None, tuple(preferred))


def _tensor_types(record: ArtifactRecord) -> dict[str, str]:
    """Element type of each tensor: what the engine binds where it says (TensorRT may narrow int64), else the ONNX
    graph's."""
    if isinstance(record, EngineRecord):
        return record.tensor_types
    return tensor_types(record.io)


def _data_type(name: str, dtype: str) -> str:
    if dtype not in DATA_TYPES:
        raise RTDetrExportError(f"tensor {name} has element type {dtype}, which Triton configs here do not map")
    return DATA_TYPES[dtype]


def add_tensors(target: Any, values: tuple[TensorSpec, ...], types: dict[str, str], plan: BatchPlan) -> None:
    for value in values:
        shape = list(value.shape or ())
        start = 0 if plan.max_batch_size == 0 else 1
        # A dynamic-size export's image height and width are Triton's variable dimension (-1); the ensemble's
        # pre-processing feeds them at the record's input_size (the opt size).
        spatial = (2, 3) if value.name == "images" and len(shape) == 4 else ()
        dims = []
        for axis, d in enumerate(shape[start:], start):
            if d is None or (isinstance(d, str) and axis not in spatial):
                raise RTDetrExportError(f"tensor {value.name} has a dynamic dimension other than the batch, "
                                        f"height and width: {shape}")
            dims.append(-1 if isinstance(d, str) else int(d))
        entry = target.add(name=value.name, data_type=_data_type(value.name, types[value.name]))
        entry.dims.extend(dims)


def add_parameters(config: Any, values: dict[str, Any]) -> None:
    """JSON strings under ``rtdetr_export.<key>``, like the ONNX metadata (``artifact.embed_metadata``)."""
    for key, value in values.items():
        config.parameters[PREFIX + key].string_value = json.dumps(value)


def _scheduling(config: Any, plan: BatchPlan, options: TritonOptions, kind: str) -> None:
    config.max_batch_size = plan.max_batch_size
    if options.dynamic_batching and plan.max_batch_size > 1:
        config.dynamic_batching.preferred_batch_size.extend(plan.preferred)
        config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    config.instance_group.add(kind=getattr(pb2().ModelInstanceGroup, kind), count=options.instances)


def record_parameters(record: ArtifactRecord) -> dict[str, Any]:
    """The record's fields as config parameters (the op census left out: it describes the file, not the model)."""
    fields = record.to_json()
    fields.pop("op_census", None)
    return fields


def tensor_types(io: IODescription) -> dict[str, str]:
    """Element type of each tensor of an ONNX graph's ``io``."""
    return {spec.name: spec.dtype for spec in io.inputs + io.outputs}


def model_config(name: str, artifact: Path, record: ArtifactRecord, backend: str, plan: BatchPlan,
                 options: TritonOptions, sha256: str, io: IODescription | None = None, role: str = "model") -> Any:
    """The ``ModelConfig`` serving ``artifact`` with ``backend`` (one of SERVED). ``io`` and ``role``: a graph of a
    split artifact (serving/split.py), whose tensors are its own, not the whole model's contract in the record."""
    config = pb2().ModelConfig(name=name, **SERVED[backend][1])
    types = _tensor_types(record) if io is None else tensor_types(io)
    io = io or record.io
    add_tensors(config.input, io.inputs, types, plan)
    add_tensors(config.output, io.outputs, types, plan)
    _scheduling(config, plan, options, "KIND_GPU" if backend == "tensorrt" else "KIND_CPU")
    add_parameters(config, {"role": role, "artifact": {"file": artifact.name, "sha256": sha256}})
    if backend == "python":
        add_parameters(config, {"runtime": options.python_runtime})
        if options.threads:
            add_parameters(config, {"threads": options.threads})
    add_parameters(config, record_parameters(record))
    return config


def python_step(name: str, role: str, plan: BatchPlan, options: TritonOptions) -> Any:
    config = pb2().ModelConfig(name=name, backend="python")
    _scheduling(config, plan, options, "KIND_CPU")
    add_parameters(config, {"role": role})
    return config


def _batched(dims: list[int], plan: BatchPlan) -> list[int]:
    return dims if plan.max_batch_size else [plan.static_batch, *dims]


def ensemble_configs(name: str, record: ArtifactRecord, plan: BatchPlan,
                     options: TritonOptions) -> dict[str, Any]:
    """Pre-processing (encoded image -> ``images``, ``orig_target_sizes``), post-processing for a raw head, and the
    ensemble ``NAME_ensemble`` that chains them with the model: JPEG in, detections-head contract out."""
    head, (height, width) = record.head, record.input_size
    types = _tensor_types(record)
    fp32, i64 = "TYPE_FP32", "TYPE_INT64"
    encoded = [1] if plan.max_batch_size else [plan.static_batch]  # one encoded image per batch item
    pre = python_step(f"{name}_preprocess", "preprocess", plan, options)
    pre.input.add(name="image", data_type="TYPE_STRING", dims=encoded)
    pre.output.add(name="images", data_type=_data_type("images", types["images"]), dims=_batched([3, height, width], plan))
    pre.output.add(name="orig_target_sizes", data_type=i64, dims=_batched([2], plan))
    add_parameters(pre, {"input_size": [height, width]})

    ensemble = pb2().ModelConfig(name=f"{name}_ensemble", platform="ensemble", max_batch_size=plan.max_batch_size)
    ensemble.input.add(name="image", data_type="TYPE_STRING", dims=encoded)
    steps = ensemble.ensemble_scheduling.step
    steps.add(model_name=pre.name, model_version=-1, input_map={"image": "image"},
              output_map={"images": "images", "orig_target_sizes": "orig_target_sizes"})
    configs = {pre.name: pre}
    model_inputs = {name: name for name in record.io.input_names}
    if head == "raw":
        queries, classes = record.io.outputs[0].shape[1:]
        post = python_step(f"{name}_postprocess", "postprocess", plan, options)
        post.input.add(name="logits", data_type=fp32, dims=_batched([queries, classes], plan))
        post.input.add(name="pred_boxes", data_type=fp32, dims=_batched([queries, 4], plan))
        post.input.add(name="orig_target_sizes", data_type=i64, dims=_batched([2], plan))
        for out, dtype, dims in (("labels", i64, [queries]), ("boxes", fp32, [queries, 4]), ("scores", fp32, [queries])):
            post.output.add(name=out, data_type=dtype, dims=_batched(dims, plan))
        configs[post.name] = post
        steps.add(model_name=name, model_version=-1, input_map=model_inputs,
                  output_map={"logits": "logits", "pred_boxes": "pred_boxes"})
        steps.add(model_name=post.name, model_version=-1,
                  input_map={"logits": "logits", "pred_boxes": "pred_boxes", "orig_target_sizes": "orig_target_sizes"},
                  output_map={k: k for k in OUTPUTS["detections"]})
        outputs = list(post.output)
    else:
        steps.add(model_name=name, model_version=-1, input_map=model_inputs,
                  output_map={k: k for k in OUTPUTS["detections"]})
        outputs = [pb2().ModelOutput(name=k, data_type=_data_type(k, types[k]),
                                     dims=_batched([int(d) for d in record.io[k].shape[1:]], plan))
                   for k in OUTPUTS["detections"]]
    for output in outputs:
        ensemble.output.add(name=output.name, data_type=output.data_type, dims=list(output.dims))
    # The model's record, so a client of the ensemble knows the contract behind it; the ensemble itself always
    # answers with the detections head. The model it chains is ``inner_model``: ``model`` is a record field.
    add_parameters(ensemble, {**record_parameters(record), "role": "ensemble", "inner_model": name})
    configs[ensemble.name] = ensemble
    return configs
