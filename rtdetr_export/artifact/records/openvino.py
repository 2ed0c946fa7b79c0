"""An OpenVINO IR's record: the ONNX file it was converted from, the IR's two files, how it was converted (and
quantized), and the runtime facts its verification ran under."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtdetr_export.artifact.records.contract import ArtifactRecord, OnnxRecord, PrecisionRecipe
from rtdetr_export.artifact.records.engine import OnnxSource
from rtdetr_export.artifact.records.fields import OPENVINO_FORMAT, Header, RecordError, _may, _need
from rtdetr_export.artifact.records.selection import SelectionRecord

# How the IR stores its weights: "fp16" is what ``openvino.save_model`` writes by default (compress_to_fp16; the
# CPU plugin computes in f32 from them), "fp32" keeps the ONNX file's float32 weights bit for bit.
IR_WEIGHTS = ("fp16", "fp32")


@dataclass(frozen=True)
class IrFiles:
    """The IR's two files (names beside the sidecar) and their sha256: the graph (.xml) and the weights (.bin)."""

    xml: str
    xml_sha256: str
    bin: str
    bin_sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"xml": {"file": self.xml, "sha256": self.xml_sha256}, "bin": {"file": self.bin,
                                                                            "sha256": self.bin_sha256}}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "IrFiles":
        xml, weights = _need(data, "xml", dict, where), _need(data, "bin", dict, where)
        return cls(Path(_need(xml, "file", str, f"{where}.xml")).name, _need(xml, "sha256", str, f"{where}.xml"),
                   Path(_need(weights, "file", str, f"{where}.bin")).name,
                   _need(weights, "sha256", str, f"{where}.bin"))


@dataclass(frozen=True)
class OpenVinoRuntime:
    """What the IR was converted with and verified under: the OpenVINO version, how its weights are stored
    (``IR_WEIGHTS``), the CPU inference-precision hint verification ran with, and whether that CPU computes bf16
    natively (AVX-512 BF16 or AMX: where it does not, OpenVINO runs a bf16 hint in f32, so a bf16 verification
    there proves nothing about bf16)."""

    openvino: str
    weights: str
    inference_precision_hint: str
    cpu: str = ""
    cpu_bf16: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"openvino": self.openvino, "weights": self.weights,
                "inference_precision_hint": self.inference_precision_hint, "cpu": self.cpu,
                "cpu_bf16": self.cpu_bf16}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "OpenVinoRuntime":
        weights = _need(data, "weights", str, where)
        if weights not in IR_WEIGHTS:
            raise RecordError(f"{where}: unknown weights {weights!r} (this version reads {', '.join(IR_WEIGHTS)})")
        return cls(_need(data, "openvino", str, where), weights, _need(data, "inference_precision_hint", str, where),
                   str(data.get("cpu") or ""), bool(data.get("cpu_bf16")))


@dataclass(frozen=True)
class NncfSummary:
    """What an NNCF INT8 IR's recipe says of itself (the recipe's ``details`` as precision/nncf_int8.py writes
    them): the library, the recipe (``rtdetr`` or ``default``), layers quantized and kept float, and the operations
    the ignored scope kept float per model part (model/parts.py's labels)."""

    library: str
    recipe: str
    quantized: int
    float: int
    kept_float: dict[str, int]

    @classmethod
    def of(cls, recipe: PrecisionRecipe | None) -> "NncfSummary | None":
        details = recipe.details if recipe else {}
        if details.get("target") != "openvino":
            return None
        nodes = details.get("nodes") or {}
        parts = (details.get("ignored_scope") or {}).get("parts") or {}
        return cls(str(details.get("library") or "?"), str(details.get("recipe") or "?"),
                   int(nodes.get("quantized") or 0), int(nodes.get("float") or 0),
                   {str(k): int(v) for k, v in parts.items() if isinstance(v, int)})


@dataclass
class OpenVinoRecord(ArtifactRecord):
    """An OpenVINO IR of ours (``MODEL.xml`` + ``MODEL.bin``, sidecar ``MODEL.xml.json``): the contract of the ONNX
    file it was converted from (its header replaced; ``precision`` is int8 when NNCF quantized it, and ``recipe``
    then says how), that file's name and hash, the IR's files, and the runtime it was verified on."""

    ir: IrFiles | None = None
    onnx: OnnxSource | None = None
    runtime: OpenVinoRuntime | None = None
    op_census: dict[str, int] = field(default_factory=dict)  # the IR's op types, as OpenVINO names them
    # Only in the sidecar of an IR ``rtdetr-export select`` chose (records/selection.py), as in OnnxRecord's.
    selection: SelectionRecord | None = None

    @classmethod
    def converted_from(cls, source: OnnxRecord, /, **fields: Any) -> "OpenVinoRecord":
        """The IR's record: ``source``'s contract (its header replaced) and the IR's own fields."""
        contract = {name: getattr(source, name) for name in ArtifactRecord.__dataclass_fields__}
        contract["header"] = Header.now(OPENVINO_FORMAT)
        return cls(**{**contract, **fields})

    @property
    def nncf(self) -> NncfSummary | None:
        """How NNCF made this IR INT8; None for an IR that was not quantized by NNCF."""
        return NncfSummary.of(self.recipe)

    @property
    def inference_hint(self) -> str:
        """The precision hint the IR runs under unless told otherwise: the one it was verified with."""
        return self.runtime.inference_precision_hint if self.runtime else "f32"

    def to_json(self) -> dict[str, Any]:
        return {**self._contract_json(), "ir": self.ir.to_json() if self.ir else None,
                "onnx": self.onnx.to_json() if self.onnx else None,
                "runtime": self.runtime.to_json() if self.runtime else None, "op_census": dict(self.op_census),
                **({"selection": self.selection.to_json()} if self.selection is not None else {})}

    @staticmethod
    def describes(data: Any) -> bool:
        return isinstance(data, dict) and data.get("format") == OPENVINO_FORMAT

    @classmethod
    def from_json(cls, data: Any, where: str = "record") -> "OpenVinoRecord":
        if not cls.describes(data):
            raise RecordError(f"{where} is not the sidecar of an OpenVINO IR (`rtdetr-export openvino`)")
        fields = cls._contract_fields(data, where)
        onnx = _may(data, "onnx", dict, where)
        census = _may(data, "op_census", dict, where, {})
        selection = _may(data, "selection", dict, where)
        return cls(**fields, ir=IrFiles.from_json(_need(data, "ir", dict, where), f"{where} ir"),
                   onnx=OnnxSource(str(onnx.get("file")), str(onnx.get("sha256")), onnx.get("verification_passed"))
                   if onnx else None,
                   runtime=OpenVinoRuntime.from_json(_need(data, "runtime", dict, where), f"{where} runtime"),
                   op_census={str(k): int(v) for k, v in census.items() if isinstance(v, int)},
                   selection=SelectionRecord.from_json(selection, f"{where} selection") if selection else None)
