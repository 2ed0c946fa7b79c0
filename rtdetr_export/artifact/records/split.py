"""A split artifact's record: two graphs and the host step between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtdetr_export.artifact.records.fields import (SPLIT_FORMAT, SPLIT_PART_FORMAT, SPLIT_PARTS, IODescription,
                                                   RecordError, _may, _need)
from rtdetr_export.artifact.records.contract import ArtifactRecord, PrecisionRecipe


@dataclass(frozen=True)
class SplitGraph:
    """One graph of a split artifact: its file name (beside the sidecar), sha256, I/O and op census, and how its
    precision was made (``recipe``: None for FP32; each graph of an FP16/INT8 split has its own, calibrated on its
    own inputs)."""

    file: str
    sha256: str
    io: IODescription
    op_census: dict[str, int] = field(default_factory=dict)
    recipe: PrecisionRecipe | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"file": self.file, "sha256": self.sha256, "io": self.io.to_json(), "op_census": dict(self.op_census)}
        if self.recipe is not None:
            out["precision_recipe"] = self.recipe.details
        return out

    @classmethod
    def from_json(cls, data: Any, where: str, precision: str = "fp32") -> "SplitGraph":
        census = _may(data, "op_census", dict, where, {})
        recipe = _may(data, "precision_recipe", dict, where)
        return cls(Path(_need(data, "file", str, where)).name, _need(data, "sha256", str, where),
                   IODescription.from_json(_need(data, "io", dict, where), where),
                   {str(k): int(v) for k, v in census.items() if isinstance(v, int)},
                   PrecisionRecipe(precision, recipe) if recipe else None)


@dataclass
class SplitRecord(ArtifactRecord):
    """A split artifact: the contract of the whole model (``io``: images in, the head's outputs out), its two graphs
    (``encoder``: images -> per-cell memory, targets, logits, reference boxes; ``decoder``: the selected queries ->
    logits, boxes) and the version of the host step that selects the queries between them (imaging/host_step.py)."""

    encoder: SplitGraph | None = None
    decoder: SplitGraph | None = None
    host_step: int = 1

    @property
    def graphs(self) -> dict[str, SplitGraph]:
        return {"encoder": self.encoder, "decoder": self.decoder}

    def to_json(self) -> dict[str, Any]:
        return {**self._contract_json(), "graphs": {name: graph.to_json() for name, graph in self.graphs.items()},
                "host_step": {"version": self.host_step}}

    @staticmethod
    def describes(data: Any) -> bool:
        return isinstance(data, dict) and data.get("format") == SPLIT_FORMAT

    @classmethod
    def from_json(cls, data: Any, where: str = "record") -> "SplitRecord":
        if not cls.describes(data):
            raise RecordError(f"{where} is not the sidecar of a split artifact (`rtdetr-export onnx --split`)")
        fields = cls._contract_fields(data, where)
        graphs = _need(data, "graphs", dict, where)
        parts = {name: SplitGraph.from_json(_need(graphs, name, dict, f"{where} graphs"), f"{where} graphs.{name}",
                                            fields["precision"]) for name in SPLIT_PARTS}
        return cls(**fields, **parts, host_step=_need(_need(data, "host_step", dict, where), "version", int, where))


@dataclass(frozen=True)
class SplitPart:
    """What a split artifact's graph says of itself in its ONNX metadata: which part it is and its sidecar's name
    (the sidecar holds the record, and the graph's sha256, which the graph cannot hold)."""

    part: str
    sidecar: str

    def to_json(self) -> dict[str, Any]:
        return {"format": SPLIT_PART_FORMAT, "part": self.part, "sidecar": self.sidecar}

    @staticmethod
    def describes(data: Any) -> bool:
        return isinstance(data, dict) and data.get("format") == SPLIT_PART_FORMAT

    @classmethod
    def from_json(cls, data: Any, where: str) -> "SplitPart":
        part = _need(data, "part", str, where)
        if part not in SPLIT_PARTS:
            raise RecordError(f"{where}: unknown split part {part!r}")
        return cls(part, Path(_need(data, "sidecar", str, where)).name)
