"""The artifact file format, in one place: what our ONNX files and TensorRT engines carry and how to read it.

Every consumer (export, verify, inspect, bench, predict, eval, the C++ ``engines/``) reads artifacts through
these functions: the one ONNX loader and its validity rule, the one sidecar-path rule (mirrored by
``engines/src/sidecar.cpp``), the provenance header and ONNX metadata, the I/O description, and the input
feed a head takes.

Sidecar schema versions: 1 (up to rtdetr-export 0.1.0's first releases); 2, which adds ``"kind"`` to each
verification run and ``"metric"`` to each output entry, so readers need not guess which number is judged; and 3,
which adds ``"input_size_range"``: null for a fixed-size file, ``{"min", "opt", "max"}`` ([height, width] each)
for a dynamic-size one, whose ``"input_size"`` is then the opt size (what a consumer runs by default), and
``"export.dynamic_size"``. Readers accept all three (``rtdetr_export.verify.results`` infers the metric of
version-1 entries; a sidecar without ``input_size_range`` is a fixed-size file).
"""

from __future__ import annotations

import datetime
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from rtdetr_export import __version__
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.config import SizeRange, size_text
from rtdetr_export.model.heads import HEADS, INPUTS, OUTPUTS

ONNX_FORMAT = "rtdetr-export/onnx"
ENGINE_FORMAT = "rtdetr-export/tensorrt-engine"
SCHEMA_VERSION = 3
READABLE_SCHEMAS = (1, 2, 3)
PREFIX = "rtdetr_export."  # ONNX metadata_props keys
LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxslim", "numpy", "transformers", "tensorrt", "openvino")
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")

__all__ = ["ENGINE_FORMAT", "ENGINE_SUFFIXES", "HEADS", "INPUTS", "ONNX_FORMAT", "ONNX_SUFFIXES", "OUTPUTS",
           "PREFIX", "SCHEMA_VERSION", "choose_input_size", "embed_metadata", "input_size_range", "io_description",
           "library_versions", "load_onnx", "make_feed", "provenance_header", "read_metadata", "read_provenance",
           "sidecar_path"]


def sidecar_path(artifact: str | Path) -> Path:
    """MODEL.onnx -> MODEL.json; an engine (any other suffix) -> MODEL.engine.json, so an engine and the ONNX
    file it was built from can share a stem. ``engines/src/sidecar.cpp`` implements the same rule."""
    path = Path(artifact)
    return path.with_suffix(".json") if path.suffix == ".onnx" else Path(str(path) + ".json")


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file (weights in external files are not loaded); one-line error if it is not a model.

    An empty or unrelated protobuf message parses as an empty ModelProto, so a model must have an IR version,
    a graph and at least one node.
    """
    path = Path(path)
    if not path.exists():
        raise RTDetrExportError(f"{path}: no such file")
    if not path.is_file():
        raise RTDetrExportError(f"{path} is not a file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise RTDetrExportError(f"{path} is not an ONNX file ({type(exc).__name__})") from None
    if model.ir_version == 0 or not model.HasField("graph") or not model.graph.node:
        raise RTDetrExportError(f"{path} is not an ONNX model (no IR version, no graph or no nodes)")
    return model


def _describe_values(values, skip: set[str]) -> list[dict[str, Any]]:
    out = []
    for value in values:
        if value.name in skip:
            continue
        if not value.type.HasField("tensor_type"):
            out.append({"name": value.name, "shape": None, "dtype": value.type.WhichOneof("value") or "unknown"})
            continue
        tensor = value.type.tensor_type
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        except (KeyError, ValueError, TypeError):
            dtype = onnx.TensorProto.DataType.Name(tensor.elem_type).lower() if tensor.elem_type else "undefined"
        shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in tensor.shape.dim] \
            if tensor.HasField("shape") else None
        out.append({"name": value.name, "shape": shape, "dtype": dtype})
    return out


def io_description(model: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    """Names, shapes (ints, symbolic names, or "?") and element types of the graph's inputs and outputs."""
    initializers = {i.name for i in model.graph.initializer}
    return {"inputs": _describe_values(model.graph.input, initializers),
            "outputs": _describe_values(model.graph.output, set())}


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shaped an artifact (those installed)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def provenance_header(format: str) -> dict[str, Any]:
    """The fields every sidecar starts with: format, schema, creation time, tool and library versions."""
    return {"format": format, "schema_version": SCHEMA_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tool": {"name": "rtdetr-export", "version": __version__}, "libraries": library_versions()}


def embed_metadata(model: onnx.ModelProto, provenance: dict[str, Any]) -> None:
    """Store each provenance field as a JSON ``metadata_props`` entry named ``rtdetr_export.<field>``."""
    kept = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in provenance.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = PREFIX + key, json.dumps(value)


def read_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """The provenance embedded by ``embed_metadata``; empty if the file was not made by us."""
    return {prop.key[len(PREFIX):]: json.loads(prop.value) for prop in model.metadata_props
            if prop.key.startswith(PREFIX)}


def _check_schema(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    version = record.get("schema_version", 1)
    if version not in READABLE_SCHEMAS:
        raise RTDetrExportError(f"{path}: sidecar schema version {version} is newer than this rtdetr-export reads "
                                f"({', '.join(map(str, READABLE_SCHEMAS))}); upgrade rtdetr-export")
    return record


def read_provenance(path: str | Path) -> dict[str, Any]:
    """Provenance of one of our artifacts: an ONNX file's metadata, an engine's sidecar; error if not ours."""
    path = Path(path)
    if path.suffix.lower() in ENGINE_SUFFIXES:
        if not path.is_file():
            raise RTDetrExportError(f"{path}: no such engine file")
        sidecar = sidecar_path(path)
        try:
            record = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            raise RTDetrExportError(f"{path}: no readable sidecar {sidecar.name} next to it; use an engine built by "
                                    "`rtdetr-export trt`") from None
        if not isinstance(record, dict) or record.get("format") != ENGINE_FORMAT:
            raise RTDetrExportError(f"{sidecar} was not written by `rtdetr-export trt`")
        return _check_schema(sidecar, record)
    try:
        meta = read_metadata(load_onnx(path))
    except (json.JSONDecodeError, ValueError):
        meta = {}
    if meta.get("format") != ONNX_FORMAT:
        raise RTDetrExportError(f"{path} was not exported by rtdetr-export (no {PREFIX}format metadata); "
                                "export it with `rtdetr-export onnx`")
    return _check_schema(path, meta)


def input_size_range(provenance: dict[str, Any]) -> SizeRange | None:
    """The sizes a dynamic-size artifact takes; None for a fixed-size one (and every sidecar before schema 3)."""
    record = provenance.get("input_size_range")
    return SizeRange.from_json(record) if record else None


def choose_input_size(provenance: dict[str, Any], asked: tuple[int, int] | None = None,
                      name: str = "the artifact") -> tuple[int, int]:
    """The (height, width) to run an artifact at: a fixed-size file's own size; for a dynamic-size file ``asked``
    if it lies within its range, else its opt size. One-line error for a size the file cannot take."""
    size, size_range = tuple(provenance["input_size"]), input_size_range(provenance)
    if asked is None:
        return size
    asked = tuple(asked)
    if size_range is None:
        if asked != size:
            raise RTDetrExportError(f"{name} takes {size_text(size)} images only (a fixed-size export); drop the "
                                    f"image size or export with --dynamic-size")
        return size
    if not size_range.contains(asked):
        raise RTDetrExportError(f"image size {size_text(asked)} is outside {name}'s range {size_range}")
    return asked


def make_feed(head: str, images: np.ndarray, sizes: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """Named inputs for a head from a batch [N, 3, H, W] and each image's original (height, width).

    ``orig_target_sizes`` is (width, height) per image, as the detections contract says.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}")
    feed = {"images": images}
    if "orig_target_sizes" in INPUTS[head]:
        feed["orig_target_sizes"] = np.array([[w, h] for h, w in sizes], dtype=np.int64)
    return feed

