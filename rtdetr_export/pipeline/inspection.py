"""What an ONNX file is: graph facts, our provenance (when it is ours) and where it can be deployed; what a split
artifact and an OpenVINO IR of ours are."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtdetr_export.artifact import (OPENVINO_SUFFIXES, PREFIX, ArtifactRecord, IODescription, OnnxRecord,
                                    OpenVinoRecord, SplitRecord, Verification, io_description, ir_weights_path,
                                    load_onnx, open_artifact, split_sidecar)
from rtdetr_export.artifact import onnx_record as embedded_record
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export import portability
from rtdetr_export.export.graph_checks import op_census
from rtdetr_export.pipeline.openvino import ir_op_census
from rtdetr_export.files import file_sha256

NO_PROVENANCE = "not exported by rtdetr-export: no provenance"


def verification_summary(verification: Verification) -> dict[str, Any]:
    """passed/failed, what was compared, and per output its judged metric's worst value over all batches."""
    return {"passed": verification.passed, "reference": verification.reference,
            "candidate": verification.candidate, "inputs": str(verification.inputs), "batches": verification.batches,
            "failures": verification.failures,
            "outputs": {name: {"metric": check.metric, "value": check.value, "threshold": check.threshold,
                               "passed": check.passed} for name, check in verification.worst().items()}}


def provenance_summary(record: ArtifactRecord, census_matches: bool) -> dict[str, Any]:
    """What ``inspect`` shows (and ``--json`` prints) of a file's record."""
    source = record.model.source
    return {
        "tool": {"name": record.header.tool, "version": record.header.tool_version},
        "created": record.header.created,
        "schema_version": record.header.schema_version,
        "model_version": record.model.config.version,
        "model_source": {"format": source.format, "file": source.file, "sha256": source.sha256, "seed": source.seed,
                         "hub": {"repo_id": source.hub.repo_id, "revision": source.hub.revision,
                                 "requested": source.hub.requested} if source.hub else None},
        "method": record.method,
        "sampler": record.sampler.value,
        "input_size": list(record.input_size),
        "input_size_range": record.input_size_range.to_json() if record.input_size_range else None,
        "head": record.head,
        "precision": record.precision,
        "classes": len(record.classes),
        "export": record.export.to_json(),
        "libraries": record.header.libraries,
        "verification": verification_summary(record.verification) if record.verification else None,
        # The file was edited after export if the graph no longer has the op census we recorded.
        "op_census_matches_graph": census_matches,
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
    io: IODescription
    nodes: int
    initializers: int
    parameters: int
    op_census: dict[str, int]
    metadata_props: dict[str, str]
    record: OnnxRecord | None  # None if the file is not ours
    portability: dict[str, Any] = field(default_factory=dict)

    @property
    def provenance_note(self) -> str | None:
        return None if self.record else NO_PROVENANCE

    @property
    def census_matches_record(self) -> bool:
        """Whether the graph still has the op census recorded at export (False: edited after export)."""
        return self.record is not None and self.record.op_census == self.op_census

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "size_bytes": self.size_bytes, "sha256": self.sha256, "producer": self.producer,
                "ir_version": self.ir_version, "opset": self.opset, "opset_imports": self.opset_imports,
                "io": self.io.to_json(), "nodes": self.nodes, "initializers": self.initializers,
                "parameters": self.parameters, "op_census": self.op_census, "metadata_props": self.metadata_props,
                "provenance": provenance_summary(self.record, self.census_matches_record) if self.record else None,
                "provenance_note": self.provenance_note,
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
    record = embedded_record(model, str(path))
    return OnnxDescription(
        file=str(path), size_bytes=path.stat().st_size, sha256=file_sha256(path),
        producer=" ".join(filter(None, [model.producer_name, model.producer_version])) or None,
        ir_version=model.ir_version, opset=opset, opset_imports=opsets, io=io_description(model),
        nodes=len(graph.node), initializers=len(graph.initializer), parameters=parameters, op_census=census,
        metadata_props={p.key: p.value for p in model.metadata_props if not p.key.startswith(PREFIX)},
        record=record,
        portability={
            "targets": list(portability.TARGETS),
            "rows": portability.portability_rows(census),
            "blockers": portability.blockers(census),
            "opset_warnings": portability.opset_warnings(opset),
            "measured": portability.measured(record.sampler.value if record else None),
            "edge": portability.edge_expectations("single", record.sampler.value if record else None),
            "edge_source": _edge_source(),
            "measured_source": portability.MEASURED_SOURCE,
            "sources": portability.SOURCES,
        })


def _edge_source() -> dict[str, Any]:
    """Where the edge rows come from: the fixture matrix's date and command (docs/portability.md)."""
    fixture = portability.FIXTURE_MEASURED
    return {"date": fixture.get("date"), "command": fixture.get("command"),
            "model": (fixture.get("model") or {}).get("path")}


@dataclass
class SplitDescription:
    """What ``inspect`` shows of a split artifact: its record once, and each graph as ``describe_onnx`` sees it."""

    sidecar: str
    record: SplitRecord
    graphs: dict[str, OnnxDescription]  # "encoder", "decoder"

    @property
    def census_matches_record(self) -> bool:
        """Whether both graphs still have the op census recorded at export."""
        return all(self.record.graphs[name].op_census == d.op_census for name, d in self.graphs.items())

    @property
    def edge(self) -> list[dict[str, Any]]:
        """Per edge runtime: whether this split is expected to run there, and what was measured."""
        return portability.edge_expectations("split", self.record.sampler.value)

    def to_json(self) -> dict[str, Any]:
        return {"sidecar": self.sidecar, "host_step": {"version": self.record.host_step},
                "provenance": provenance_summary(self.record, self.census_matches_record),
                "edge": self.edge, "edge_source": _edge_source(),
                "graphs": {name: d.to_json() for name, d in self.graphs.items()}}


def is_split(path: str | Path) -> bool:
    """Whether ``path`` names a split artifact: a sidecar, or a graph that says it is one of a split's two."""
    return split_sidecar(path) is not None


def describe_split(path: str | Path) -> SplitDescription:
    """A split artifact (its sidecar or either graph), both graphs checked to belong to it first."""
    sidecar = split_sidecar(path)
    record = open_artifact(path)
    if sidecar is None or not isinstance(record, SplitRecord):
        raise RTDetrExportError(f"{path} is not a split artifact")
    return SplitDescription(str(sidecar), record, {name: describe_onnx(sidecar.parent / graph.file)
                                                   for name, graph in record.graphs.items()})


@dataclass
class IrDescription:
    """What ``inspect`` shows of an OpenVINO IR of ours: its files, its record, and its op census as OpenVINO reads
    the IR now (against the one recorded when it was written)."""

    file: str
    weights: str
    size_bytes: int
    record: OpenVinoRecord
    op_census: dict[str, int]

    @property
    def census_matches_record(self) -> bool:
        return self.record.op_census == self.op_census

    def to_json(self) -> dict[str, Any]:
        record = self.record
        return {"file": self.file, "weights": self.weights, "size_bytes": self.size_bytes,
                "ir": record.ir.to_json(), "onnx": record.onnx.to_json() if record.onnx else None,
                "runtime": record.runtime.to_json(), "op_census": self.op_census,
                "precision_recipe": record.recipe.details if record.recipe else None,
                "provenance": provenance_summary(record, self.census_matches_record)}


def is_openvino(path: str | Path) -> bool:
    """Whether ``path`` names an OpenVINO IR (its .xml)."""
    return Path(path).suffix.lower() in OPENVINO_SUFFIXES


def describe_openvino(path: str | Path) -> IrDescription:
    """An OpenVINO IR of ours (its .xml), its files checked against its sidecar first."""
    import openvino as ov

    path = Path(path)
    record = open_artifact(path)
    if not isinstance(record, OpenVinoRecord):
        raise RTDetrExportError(f"{path} is not an OpenVINO IR of ours")
    weights = ir_weights_path(path)
    return IrDescription(str(path), weights.name, path.stat().st_size + weights.stat().st_size, record,
                         ir_op_census(ov.Core().read_model(str(path))))
