"""The artifact files, in one place: the one ONNX loader and its validity rule, the one sidecar-path rule
(mirrored by ``engines/src/sidecar.cpp``), the record written into ONNX metadata and beside every artifact, and
``open_artifact``, which returns an artifact's typed record (artifact/records/ says what each schema holds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from rtdetr_export.artifact.records import (ArtifactRecord, EngineRecord, IODescription, OnnxRecord,
                                            OpenVinoRecord, RecordError, SplitPart, SplitRecord, TensorSpec)
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.files import file_sha256, write_text_atomic
from rtdetr_export.model.heads import HEADS, INPUTS

PREFIX = "rtdetr_export."  # ONNX metadata_props keys
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
OPENVINO_SUFFIXES = (".xml",)  # an OpenVINO IR: MODEL.xml, its weights MODEL.bin beside it


def sidecar_path(artifact: str | Path) -> Path:
    """MODEL.onnx -> MODEL.json; an engine or an OpenVINO IR (any other suffix) -> MODEL.engine.json,
    MODEL.xml.json, so either and the ONNX file it was made from can share a stem. ``engines/src/sidecar.cpp``
    implements the same rule."""
    path = Path(artifact)
    return path.with_suffix(".json") if path.suffix == ".onnx" else Path(str(path) + ".json")


def split_paths(output: str | Path) -> tuple[Path, Path, Path]:
    """A split artifact's files for ``MODEL.onnx``: MODEL.encoder.onnx, MODEL.decoder.onnx and the sidecar
    MODEL.json (the sidecar rule of the single file, so the two never share a stem unnoticed)."""
    path = Path(output)
    stem = path.with_suffix("")
    return Path(f"{stem}.encoder.onnx"), Path(f"{stem}.decoder.onnx"), sidecar_path(path)


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


def _describe_values(values, skip: set[str]) -> tuple[TensorSpec, ...]:
    out = []
    for value in values:
        if value.name in skip:
            continue
        if not value.type.HasField("tensor_type"):
            out.append(TensorSpec(value.name, None, value.type.WhichOneof("value") or "unknown"))
            continue
        tensor = value.type.tensor_type
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        except (KeyError, ValueError, TypeError):
            dtype = onnx.TensorProto.DataType.Name(tensor.elem_type).lower() if tensor.elem_type else "undefined"
        shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in tensor.shape.dim] \
            if tensor.HasField("shape") else None
        out.append(TensorSpec(value.name, None if shape is None else tuple(shape), dtype))
    return tuple(out)


def io_description(model: onnx.ModelProto) -> IODescription:
    """Names, shapes (ints, symbolic names, or "?") and element types of the graph's inputs and outputs."""
    initializers = {i.name for i in model.graph.initializer}
    return IODescription(_describe_values(model.graph.input, initializers),
                         _describe_values(model.graph.output, set()))


def embed_metadata(model: onnx.ModelProto, record: OnnxRecord) -> None:
    """Store each field of ``record`` as a JSON ``metadata_props`` entry named ``rtdetr_export.<field>``."""
    _embed_fields(model, record.to_json())


def _embed_fields(model: onnx.ModelProto, fields: dict[str, Any]) -> None:
    kept = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in fields.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = PREFIX + key, json.dumps(value)


def read_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """The provenance embedded by ``embed_metadata``; empty if the file was not made by us."""
    return {prop.key[len(PREFIX):]: json.loads(prop.value) for prop in model.metadata_props
            if prop.key.startswith(PREFIX)}


def write_sidecar(path: Path, record: ArtifactRecord) -> None:
    """Write ``record`` as the sidecar JSON ``path``, atomically."""
    write_text_atomic(path, json.dumps(record.to_json(), indent=2) + "\n")


def onnx_record(model: onnx.ModelProto, where: str) -> OnnxRecord | None:
    """The record embedded in an ONNX model; None if the file was not made by us (no format entry)."""
    try:
        fields = read_metadata(model)
    except (json.JSONDecodeError, ValueError):
        return None
    return OnnxRecord.from_json(fields, where) if OnnxRecord.describes(fields) else None


def open_artifact(path: str | Path) -> ArtifactRecord:
    """The record of one of our artifacts: an ONNX file's metadata (``OnnxRecord``), an engine's sidecar
    (``EngineRecord``), a split artifact's sidecar (``SplitRecord``, given the sidecar or either graph), an OpenVINO
    IR's sidecar (``OpenVinoRecord``, given the .xml); a one-line error if the file is missing, not ours, or its
    record is damaged."""
    path = Path(path)
    if path.suffix.lower() in ENGINE_SUFFIXES:
        return open_engine_record(path)
    if path.suffix.lower() in OPENVINO_SUFFIXES:
        return open_openvino_record(path)
    sidecar = split_sidecar(path)
    if sidecar is not None:
        return open_split_record(sidecar)
    record = onnx_record(load_onnx(path), str(path))
    if record is None:
        raise RTDetrExportError(f"{path} was not exported by rtdetr-export (no {PREFIX}format metadata); "
                                "export it with `rtdetr-export onnx`")
    return record


def split_sidecar(path: str | Path) -> Path | None:
    """A split artifact's sidecar, given the sidecar or either graph (all three lie together); None when ``path``
    is an ONNX file that is not one of a split's graphs."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return path
    part = split_part(load_onnx(path), str(path))
    return None if part is None else path.parent / part.sidecar


def split_part(model: onnx.ModelProto, where: str) -> SplitPart | None:
    """What a split artifact's graph says of itself; None for any other ONNX file."""
    try:
        fields = read_metadata(model)
    except (json.JSONDecodeError, ValueError):
        return None
    return SplitPart.from_json(fields, where) if SplitPart.describes(fields) else None


def embed_split_part(model: onnx.ModelProto, part: SplitPart) -> None:
    """Store ``part`` in a split graph's metadata, as ``embed_metadata`` stores a record."""
    _embed_fields(model, part.to_json())


def open_split_record(sidecar: Path) -> SplitRecord:
    """A split artifact's record, once both graphs it names are beside it with the sha256 it recorded."""
    try:
        data = json.loads(sidecar.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        raise RTDetrExportError(f"{sidecar}: not a readable JSON sidecar") from None
    if not SplitRecord.describes(data):
        raise RTDetrExportError(f"{sidecar} is not the sidecar of a split artifact; open the .onnx or engine file "
                                "it describes instead")
    record = SplitRecord.from_json(data, str(sidecar))
    for name, graph in record.graphs.items():
        path = sidecar.parent / graph.file
        if not path.is_file():
            raise RTDetrExportError(f"{path}: the {name} graph of {sidecar.name} is missing; copy both graphs "
                                    "with the sidecar, or export again with --split")
        if file_sha256(path) != graph.sha256:
            raise RTDetrExportError(f"{path} is not the {name} graph {sidecar.name} was written with (sha256 "
                                    "differs): both graphs and the sidecar must come from one export")
    return record


def ir_weights_path(xml: str | Path) -> Path:
    """An OpenVINO IR's weights file: MODEL.xml -> MODEL.bin (where OpenVINO looks for them)."""
    return Path(xml).with_suffix(".bin")


def open_openvino_record(path: Path) -> OpenVinoRecord:
    """An OpenVINO IR's record from its sidecar (``MODEL.xml.json``), once the .xml and the .bin beside it are the
    files it recorded (sha256)."""
    if not path.is_file():
        raise RTDetrExportError(f"{path}: no such OpenVINO IR file")
    weights = ir_weights_path(path)
    if not weights.is_file():
        raise RTDetrExportError(f"{path}: its weights {weights.name} are not beside it; copy the .xml, the .bin "
                                "and the .xml.json together")
    sidecar = sidecar_path(path)
    record = OpenVinoRecord.from_json(_sidecar_json(path, "an IR written by `rtdetr-export openvino`"), str(sidecar))
    for file, recorded in ((path, record.ir.xml_sha256), (weights, record.ir.bin_sha256)):
        if file_sha256(file) != recorded:
            raise RTDetrExportError(f"{file} is not the file {sidecar.name} was written with (sha256 differs): the "
                                    ".xml, the .bin and the sidecar must come from one `rtdetr-export openvino`")
    return record


def open_engine_record(path: Path) -> EngineRecord:
    """An engine's record from its sidecar (``MODEL.engine.json``)."""
    if not path.is_file():
        raise RTDetrExportError(f"{path}: no such engine file")
    data = _sidecar_json(path, "an engine built by `rtdetr-export trt`")
    return EngineRecord.from_json(data, str(sidecar_path(path)))


def _sidecar_json(path: Path, made_by: str) -> Any:
    """The JSON of the sidecar next to ``path``; one-line error naming what makes one when it is missing or not JSON."""
    sidecar = sidecar_path(path)
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        raise RTDetrExportError(f"{path}: no readable sidecar {sidecar.name} next to it; use {made_by}") from None


def read_sidecar(path: str | Path) -> OnnxRecord:
    """An ONNX file's sidecar (``MODEL.json``) as its record; one-line error if it is missing or damaged."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        raise RecordError(f"{path}: not a readable JSON sidecar") from None
    return OnnxRecord.from_json(data, str(path))


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

