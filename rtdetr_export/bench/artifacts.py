"""Artifacts named on the command line: what each one is, checked before any benchmarking starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtdetr_export.artifact import (ENGINE_SUFFIXES, ONNX_SUFFIXES, OPENVINO_SUFFIXES, ArtifactRecord, ir_weights_path,
                                    load_onnx, onnx_record, open_artifact, split_sidecar)
from rtdetr_export.artifact.files import split_part
from rtdetr_export.backends import Runner, artifact_runner
from rtdetr_export.backends.split_runner import GraphRunner
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.config import SizeRange, size_text

ONNX_KINDS = ("onnx", "split")  # artifacts whose graphs ONNX Runtime and OpenVINO run
OPENVINO_KINDS = ONNX_KINDS + ("openvino-ir",)  # artifacts OpenVINO runs: those, and an OpenVINO IR of ours


@dataclass
class Artifact:
    """One file to benchmark: an ONNX graph, a split artifact (two graphs and the host step), an OpenVINO IR or a
    serialized TensorRT engine."""

    path: Path
    kind: str  # "onnx", "split", "openvino-ir" or "tensorrt"
    label: str  # how report rows name it
    head: str = "raw"
    batches: tuple[int, int] | None = None  # (smallest, largest) batch it takes; None: any (dynamic axis)
    precision: str = "fp32"
    record: ArtifactRecord | None = field(default=None, repr=False)  # None: not made by rtdetr-export
    image_size: tuple[int, int] | None = None  # a fixed-size file's; None: dynamic (or unknown)
    size_bytes: int = 0
    nodes: int | None = None
    size_range: SizeRange | None = None  # the sizes a dynamic-size file of ours takes

    def supports(self, batch: int) -> bool:
        return self.batches is None or self.batches[0] <= batch <= self.batches[1]

    def runner(self, graph: GraphRunner) -> Runner:
        """What runs this ONNX file or split artifact, each ONNX graph opened by ``graph``."""
        return artifact_runner(self.path, self.record, graph)

    def check_size(self, size: tuple[int, int]) -> None:
        """One-line error unless the artifact takes (height, width) images."""
        if self.image_size and tuple(self.image_size) != tuple(size):
            raise RTDetrExportError(f"{self.path} takes {size_text(self.image_size)} images only but the benchmark "
                                    f"runs at {size_text(size)}")
        if self.size_range is not None and not self.size_range.contains(size):
            raise RTDetrExportError(f"image size {size_text(size)} is outside {self.path}'s range {self.size_range}")

    @property
    def batch_text(self) -> str:
        if self.batches is None:
            return "dynamic"
        low, high = self.batches
        return str(low) if low == high else f"{low}-{high}"

    def to_json(self) -> dict[str, Any]:
        """How a bench report lists the artifact."""
        return {"path": str(self.path), "kind": self.kind, "label": self.label, "head": self.head,
                "batch": self.batch_text, "precision": self.precision,
                "ours": self.record is not None, "size_bytes": self.size_bytes, "nodes": self.nodes}


def _onnx_artifact(path: Path, label: str) -> Artifact:
    model = load_onnx(path)
    if split_part(model, str(path)) is not None:  # one graph of a split artifact: the artifact is the pair
        return _split_artifact(path, label)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    names = [i.name for i in inputs]
    if "images" not in names:
        raise RTDetrExportError(f"{path}: no 'images' input (inputs: {', '.join(names)}); the benchmark feeds the "
                                "tensor contract of docs/onnx-export.md")
    dims = inputs[names.index("images")].type.tensor_type.shape.dim
    batch = dims[0].dim_value if len(dims) == 4 and dims[0].dim_value > 0 else None
    size = (dims[2].dim_value, dims[3].dim_value) if len(dims) == 4 and dims[2].dim_value > 0 else None
    record = onnx_record(model, str(path))
    head = "detections" if "orig_target_sizes" in names else "raw"
    return Artifact(path, "onnx", label, head, None if batch is None else (batch, batch),
                    record.precision if record else "fp32", record, size, path.stat().st_size, len(model.graph.node),
                    record.input_size_range if record else None)


def _split_artifact(path: Path, label: str) -> Artifact:
    record = open_artifact(path)  # one-line error unless both graphs are there and come from one export
    folder = split_sidecar(path).parent
    batch = record.static_batch
    return Artifact(path, "split", label, record.head, None if batch is None else (batch, batch), record.precision,
                    record, record.input_size, sum((folder / g.file).stat().st_size for g in record.graphs.values()),
                    sum(sum(g.op_census.values()) for g in record.graphs.values()))


def _openvino_artifact(path: Path, label: str) -> Artifact:
    record = open_artifact(path)  # one-line error unless the .bin and the sidecar are there and match
    batch = record.static_batch
    return Artifact(path, "openvino-ir", label, record.head, None if batch is None else (batch, batch),
                    record.precision, record, None if record.input_size_range else record.input_size,
                    path.stat().st_size + ir_weights_path(path).stat().st_size, sum(record.op_census.values()),
                    record.input_size_range)


def _engine_artifact(path: Path, label: str) -> Artifact:
    # An engine is opaque here; the record `rtdetr-export trt` writes beside it (OUT.engine.json) says its
    # head, batch profile, precision and the model it came from. A foreign engine has none: it still runs.
    try:
        record = open_artifact(path)
    except RTDetrExportError:
        return Artifact(path, "tensorrt", label, size_bytes=path.stat().st_size)
    return Artifact(path, "tensorrt", label, record.head, record.batch_range, record.precision, record,
                    None if record.input_size_range else record.input_size, path.stat().st_size,
                    size_range=record.input_size_range)


def check_artifact(path: str | Path, label: str | None = None) -> Artifact:
    """Check that ``path`` exists and is a readable ONNX file, split artifact (its sidecar or either graph), OpenVINO
    IR or TensorRT engine; one-line error if not."""
    path = Path(path)
    if not path.is_file():
        raise RTDetrExportError(f"{path}: no such file")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise RTDetrExportError(f"{path}: cannot read it ({exc.strerror})") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _split_artifact(path, label or path.name)
    if suffix in ONNX_SUFFIXES:
        return _onnx_artifact(path, label or path.name)
    if suffix in ENGINE_SUFFIXES:
        return _engine_artifact(path, label or path.name)
    if suffix in OPENVINO_SUFFIXES:
        return _openvino_artifact(path, label or path.name)
    raise RTDetrExportError(f"{path}: unknown artifact type; benchmark .onnx files, split artifacts (.json), "
                            f"OpenVINO IRs (.xml) or TensorRT engines ({', '.join(ENGINE_SUFFIXES)})")
