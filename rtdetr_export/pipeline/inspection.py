"""What an ONNX file is: graph facts, our provenance (when it is ours) and where it can be deployed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtdetr_export.artifact import ONNX_FORMAT, PREFIX, io_description, load_onnx, read_metadata
from rtdetr_export.export import portability
from rtdetr_export.export.graph_checks import op_census
from rtdetr_export.export.torch_export import sampler
from rtdetr_export.files import file_sha256
from rtdetr_export.verify.results import Verification

NO_PROVENANCE = "not exported by rtdetr-export: no provenance"


def verification_summary(verification: Verification) -> dict[str, Any]:
    """passed/failed, what was compared, and per output its judged metric's worst value over all batches."""
    return {"passed": verification.passed, "reference": verification.reference,
            "candidate": verification.candidate, "inputs": verification.inputs, "batches": verification.batches,
            "failures": verification.failures,
            "outputs": {name: {"metric": check.metric, "value": check.value, "threshold": check.threshold,
                               "passed": check.passed} for name, check in verification.worst().items()}}


def _provenance_summary(meta: dict[str, Any], census: dict[str, int]) -> dict[str, Any]:
    source = (meta.get("model") or {}).get("source") or {}
    config = (meta.get("model") or {}).get("config") or {}
    export = meta.get("export") or {}
    classes = meta.get("classes")
    return {
        "tool": meta.get("tool"),
        "created": meta.get("created"),
        # Files written before the version was recorded were all exported as v2 (v1 computes the same network).
        "model_version": config.get("version", "v2"),
        "model_source": {"format": source.get("format"), "file": source.get("file") or source.get("path"),
                         "sha256": source.get("sha256"), "seed": source.get("seed"), "hub": source.get("hub")},
        "method": meta.get("method"),
        # Files from before the gather bilinear op wrote ``default`` with GridSample.
        "sampler": meta.get("sampler") or sampler(meta.get("method") or "default", "gridsample"),
        "input_size": meta.get("input_size"),
        "input_size_range": meta.get("input_size_range"),  # null (and absent before schema 3): a fixed size
        "head": export.get("head"),
        "precision": meta.get("precision"),
        "classes": len(classes) if isinstance(classes, list) else None,
        "export": export,
        "libraries": meta.get("libraries"),
        "verification": verification_summary(Verification.from_json(meta["verification"]))
        if meta.get("verification") else None,
        # The file was edited after export if the graph no longer has the op census we recorded.
        "op_census_matches_graph": meta.get("op_census") == census,
    }


@dataclass
class OnnxDescription:
    """What ``rtdetr-export inspect`` shows about one ONNX file; ``to_json`` is its ``--json`` output."""

    file: str
    size_bytes: int
    sha256: str
    producer: str | None
    ir_version: int
    opset: int | None
    opset_imports: dict[str, int]
    io: dict[str, list[dict[str, Any]]]
    nodes: int
    initializers: int
    parameters: int
    op_census: dict[str, int]
    metadata_props: dict[str, str]
    provenance: dict[str, Any] | None  # summary of our provenance; None if the file is not ours
    portability: dict[str, Any] = field(default_factory=dict)

    @property
    def provenance_note(self) -> str | None:
        return None if self.provenance else NO_PROVENANCE

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "size_bytes": self.size_bytes, "sha256": self.sha256, "producer": self.producer,
                "ir_version": self.ir_version, "opset": self.opset, "opset_imports": self.opset_imports,
                "io": self.io, "nodes": self.nodes, "initializers": self.initializers,
                "parameters": self.parameters, "op_census": self.op_census, "metadata_props": self.metadata_props,
                "provenance": self.provenance, "provenance_note": self.provenance_note,
                "portability": self.portability}


def describe_onnx(path: str | Path) -> OnnxDescription:
    """Everything ``rtdetr-export inspect`` shows; RTDetrExportError if PATH is not an ONNX model."""
    path = Path(path)
    model = load_onnx(path)
    graph = model.graph
    census = op_census(model)
    opsets = {(entry.domain or "ai.onnx"): entry.version for entry in model.opset_import}
    opset = opsets.get("ai.onnx")
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
    ours = meta.get("format") == ONNX_FORMAT
    provenance = _provenance_summary(meta, census) if ours else None
    sampler_name = provenance["sampler"] if provenance else None
    return OnnxDescription(
        file=str(path), size_bytes=path.stat().st_size, sha256=file_sha256(path),
        producer=" ".join(filter(None, [model.producer_name, model.producer_version])) or None,
        ir_version=model.ir_version, opset=opset, opset_imports=opsets, io=io_description(model),
        nodes=len(graph.node), initializers=len(graph.initializer), parameters=parameters, op_census=census,
        metadata_props={p.key: p.value for p in model.metadata_props if not p.key.startswith(PREFIX)},
        provenance=provenance,
        portability={
            "targets": list(portability.TARGETS),
            "rows": portability.portability_rows(census),
            "blockers": portability.blockers(census),
            "opset_warnings": portability.opset_warnings(opset),
            "measured": portability.measured(sampler_name),
            "measured_source": portability.MEASURED_SOURCE,
            "sources": portability.SOURCES,
        })
