"""What an ONNX file is: graph facts, our provenance (when it is ours) and where it can be deployed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export import portability
from rtdetr_export.export.graph_checks import op_census
from rtdetr_export.export.provenance import FORMAT, PREFIX, read_metadata
from rtdetr_export.files import file_sha256

NO_PROVENANCE = "not exported by rtdetr-export: no provenance"


def _load(path: Path) -> onnx.ModelProto:
    if not path.exists():
        raise RTDetrExportError(f"{path}: no such file")
    if not path.is_file():
        raise RTDetrExportError(f"{path} is not a file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise RTDetrExportError(f"{path} is not an ONNX file ({type(exc).__name__})") from None
    # An empty or unrelated protobuf message parses as an empty ModelProto.
    if model.ir_version == 0 or not model.HasField("graph"):
        raise RTDetrExportError(f"{path} is not an ONNX model (no IR version or no graph)")
    return model


def _values(values, skip: set[str]) -> list[dict[str, Any]]:
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


def _key_number(entry: dict[str, Any]) -> tuple[str, float] | None:
    """The metric a verification entry is judged by: the first number that is not the threshold."""
    for key, value in entry.items():
        if key not in ("threshold", "passed") and isinstance(value, (int, float)) and not isinstance(value, bool):
            return key, float(value)
    return None


def _verification_summary(verification: dict | None) -> dict[str, Any] | None:
    """passed/failed, what was compared, and per output the worst key number over all batch sizes."""
    if not verification:
        return None
    worst: dict[str, dict[str, Any]] = {}
    for run in verification.get("runs", []):
        for name, entry in run.get("outputs", {}).items():
            found = _key_number(entry)
            if found is None:
                continue
            metric, value = found
            higher_is_better = metric in ("agreement",) or "iou" in metric
            seen = worst.get(name)
            if seen is None or (value < seen["value"] if higher_is_better else value > seen["value"]):
                worst[name] = {"metric": metric, "value": value, "threshold": entry.get("threshold"),
                               "passed": entry.get("passed")}
    return {"passed": bool(verification.get("passed")), "reference": verification.get("reference"),
            "candidate": verification.get("candidate"), "inputs": verification.get("inputs"),
            "batches": [run.get("batch") for run in verification.get("runs", [])],
            "failures": verification.get("failures", []), "outputs": worst}


def _provenance_summary(meta: dict[str, Any], census: dict[str, int]) -> dict[str, Any]:
    source = (meta.get("model") or {}).get("source") or {}
    export = meta.get("export") or {}
    classes = meta.get("classes")
    return {
        "tool": meta.get("tool"),
        "created": meta.get("created"),
        "model_source": {"format": source.get("format"), "file": source.get("file") or source.get("path"),
                         "sha256": source.get("sha256"), "seed": source.get("seed")},
        "method": meta.get("method"),
        "input_size": meta.get("input_size"),
        "head": export.get("head"),
        "precision": meta.get("precision"),
        "classes": len(classes) if isinstance(classes, list) else None,
        "export": export,
        "libraries": meta.get("libraries"),
        "verification": _verification_summary(meta.get("verification")),
        # The file was edited after export if the graph no longer has the op census we recorded.
        "op_census_matches_graph": meta.get("op_census") == census,
    }


def describe_onnx(path: str | Path) -> dict[str, Any]:
    """Everything ``rtdetr-export inspect`` shows, as plain data; RTDetrExportError if PATH is not ONNX."""
    path = Path(path)
    model = _load(path)
    graph = model.graph
    census = op_census(model)
    opsets = {(entry.domain or "ai.onnx"): entry.version for entry in model.opset_import}
    opset = opsets.get("ai.onnx")
    initializers = {init.name for init in graph.initializer}
    parameters = 0
    for init in graph.initializer:
        count = 1
        for dim in init.dims:
            count *= dim
        parameters += count

    try:
        meta = read_metadata(model)
    except (json.JSONDecodeError, ValueError):
        meta = {}
    ours = meta.get("format") == FORMAT
    foreign_props = {p.key: p.value for p in model.metadata_props if not p.key.startswith(PREFIX)}
    provenance = _provenance_summary(meta, census) if ours else None
    method = provenance["method"] if provenance else None

    return {
        "file": str(path),
        "size_bytes": path.stat().st_size,
        "sha256": file_sha256(path),
        "producer": " ".join(filter(None, [model.producer_name, model.producer_version])) or None,
        "ir_version": model.ir_version,
        "opset": opset,
        "opset_imports": opsets,
        "io": {"inputs": _values(graph.input, initializers), "outputs": _values(graph.output, set())},
        "nodes": len(graph.node),
        "initializers": len(graph.initializer),
        "parameters": parameters,
        "op_census": census,
        "metadata_props": foreign_props,
        "provenance": provenance,
        "provenance_note": None if ours else NO_PROVENANCE,
        "portability": {
            "targets": list(portability.TARGETS),
            "rows": portability.portability_rows(census),
            "blockers": portability.blockers(census),
            "opset_warnings": portability.opset_warnings(opset),
            "measured": portability.measured(method),
            "measured_source": portability.MEASURED_SOURCE,
            "sources": portability.SOURCES,
        },
    }
