"""The model contract every artifact record shares (``ArtifactRecord``) and an ONNX file's record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtdetr_export.artifact.options import DEFAULT_CALIBRATION_COUNT, GraphOptions, PrecisionOptions
from rtdetr_export.artifact.verification import Verification
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.config import ModelConfig, SizeRange, size_text
from rtdetr_export.model.deimv2_config import Deimv2Config
from rtdetr_export.model.dfine_config import DFineConfig
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.model.source import HubRevision, WeightSource
from rtdetr_export.artifact.records.selection import SelectionRecord
from rtdetr_export.artifact.records.fields import (DEFAULT_TOP_K, ONNX_FORMAT, RecordError, Header, IODescription,
                                                   _may, _need, _size)


@dataclass(frozen=True)
class SourceRecord:
    """Where the weights came from: ``format`` as ``WeightSource``; ``file`` is the file's name (never a path)."""

    format: str
    file: str | None = None
    sha256: str | None = None
    seed: int | None = None
    hub: HubRevision | None = None

    @classmethod
    def of(cls, source: WeightSource) -> "SourceRecord":
        return cls(source.format, Path(source.path).name if source.path else None, source.sha256, source.seed,
                   source.hub)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format, "sha256": self.sha256, "seed": self.seed, "file": self.file}
        if self.hub is not None:
            out["hub"] = {"repo_id": self.hub.repo_id, "revision": self.hub.revision,
                          "requested": self.hub.requested}
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> "SourceRecord":
        hub = _may(data, "hub", dict, where)
        file = _may(data, "file", str, where) or _may(data, "path", str, where)  # schema 1 kept the path
        return cls(_need(data, "format", str, where), Path(file).name if file else None,
                   _may(data, "sha256", str, where), _may(data, "seed", int, where),
                   HubRevision(_need(hub, "repo_id", str, where), _need(hub, "revision", str, where),
                               str(hub.get("requested") or "main")) if hub else None)


# ``family`` -> the config class that reads ``config``: the family decides which detector the fields build
# (RT-DETR v1/v2's ``RTDETRv2``, ``DFine`` or ``Deimv2``). Records written before D-FINE existed have no family:
# RT-DETR.
FAMILIES: dict[str, type[ModelConfig]] = {"rtdetr": ModelConfig, "dfine": DFineConfig, "deimv2": Deimv2Config}


def family_of(config: ModelConfig) -> str:
    """The record's ``family`` for ``config`` (a Deimv2Config is a DFineConfig: asked first)."""
    return "deimv2" if isinstance(config, Deimv2Config) else "dfine" if isinstance(config, DFineConfig) else "rtdetr"


@dataclass(frozen=True)
class ModelRecord:
    """The weights' source, the detector family and its full architecture (RT-DETR: ``config.version`` v1 or v2;
    D-FINE: ``config.variant`` D-FINE or DEIM; DEIMv2: ``config.size``)."""

    source: SourceRecord
    config: ModelConfig

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source.to_json(), "family": family_of(self.config), "config": self.config.to_dict()}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "ModelRecord":
        family = _may(data, "family", str, where) or "rtdetr"
        if family not in FAMILIES:
            raise RecordError(f"{where}: unknown model family {family!r} (this version reads "
                              f"{', '.join(FAMILIES)}); it was written by a newer rtdetr-export")
        try:
            config = FAMILIES[family].from_dict(_need(data, "config", dict, where))
        except RTDetrExportError as exc:
            raise RecordError(f"{where}: model config: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise RecordError(f"{where}: model config is damaged ({exc})") from None
        return cls(SourceRecord.from_json(_need(data, "source", dict, where), where), config)


@dataclass(frozen=True)
class ExportRecord:
    """How the graph was traced (the ``export`` field; the sampler and size range are top-level fields)."""

    opset: int
    head: str
    top_k: int | None = None  # the detections head's; None for the raw head
    batch: int | None = 1  # None: dynamic batch
    dynamic_batch: bool = False
    dynamic_size: bool = False
    simplifier: str | None = None
    exporter: str = "torch.onnx"

    def to_json(self) -> dict[str, Any]:
        return {"opset": self.opset, "head": self.head, "top_k": self.top_k, "batch": self.batch,
                "dynamic_batch": self.dynamic_batch, "dynamic_size": self.dynamic_size,
                "simplifier": self.simplifier, "exporter": self.exporter}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "ExportRecord":
        where = f"{where} export"
        return cls(_need(data, "opset", int, where), _need(data, "head", str, where), _may(data, "top_k", int, where),
                   _may(data, "batch", int, where), bool(data.get("dynamic_batch")), bool(data.get("dynamic_size")),
                   _may(data, "simplifier", str, where), str(data.get("exporter") or "torch.onnx"))


def sampler_of(data: dict[str, Any], where: str) -> Sampler:
    """The sampler a record names: schema 4's ``sampler``, else from ``method`` and ``export.bilinear_op``."""
    name = data.get("sampler")
    if name is not None:
        try:
            return Sampler(name)
        except ValueError:
            raise RecordError(f"{where}: unknown sampler {name!r}") from None
    export = data.get("export") if isinstance(data.get("export"), dict) else {}
    method = data.get("method") or "default"
    try:
        return Sampler.parse(method, export.get("bilinear_op") or "gridsample")
    except RTDetrExportError as exc:
        raise RecordError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class PrecisionRecipe:
    """How an FP16 or INT8 graph was made; ``details`` is the JSON the precision pass wrote (what ``inspect`` and
    the sidecar show), read here and nowhere else."""

    precision: str
    details: dict[str, Any]

    @property
    def int8_target(self) -> str:
        return str(self.details.get("target") or "tensorrt")

    @property
    def calibration(self) -> dict[str, Any]:
        """Where the calibration images came from and how many (INT8: also the method)."""
        key = "range_calibration" if self.precision == "fp16" else "calibration"
        return dict(self.details.get(key) or {})

    def options(self, calib_images: str | None = None) -> PrecisionOptions:
        """The PrecisionOptions that made this recipe (``calib_images``: where to calibrate again)."""
        count = int(self.calibration.get("count") or DEFAULT_CALIBRATION_COUNT)
        if self.precision == "fp16":
            return PrecisionOptions("fp16", calib_images, count, keep_fp32=tuple(self.details.get("keep_fp32") or ()))
        fp16 = self.details.get("fp16") or {}
        return PrecisionOptions("int8", calib_images, count, str(self.calibration.get("method") or "minmax"),
                                tuple(self.details.get("user_exclusions") or ()),
                                bool(self.details.get("default_exclusions")), tuple(fp16.get("keep_fp32") or ()),
                                int8_target=self.int8_target,
                                # files from before --int8-float kept every float layer FP32
                                int8_float=str(self.details.get("float") or "fp32"))


@dataclass
class ArtifactRecord:
    """The model contract an ONNX file and an engine share; see ``OnnxRecord`` and ``EngineRecord``."""

    header: Header
    model: ModelRecord
    sampler: Sampler
    input_size: tuple[int, int]  # what it runs at by default: a fixed size, or a dynamic-size file's opt
    input_size_range: SizeRange | None  # None: a fixed-size artifact
    classes: list[str]
    precision: str
    export: ExportRecord
    io: IODescription
    verification: Verification | None = None
    recipe: PrecisionRecipe | None = None

    @property
    def head(self) -> str:
        return self.export.head

    @property
    def top_k(self) -> int:
        """Detections the detections head keeps (the reference's top-k for a raw file)."""
        return self.export.top_k or DEFAULT_TOP_K

    @property
    def method(self) -> str:
        return self.sampler.method

    @property
    def static_batch(self) -> int | None:
        """The batch a static-batch artifact takes; None for a dynamic batch."""
        return None if self.export.dynamic_batch else (self.export.batch or 1)

    @property
    def verification_batches(self) -> list[int]:
        return self.graph_options().verification_batches

    def graph_options(self) -> GraphOptions:
        """The options the graph was exported with: a re-export with them makes the same graph (same sampler, size
        range, batch, head, opset and simplification)."""
        return GraphOptions(opset=self.export.opset, batch=self.export.batch or 1,
                            dynamic_batch=self.export.dynamic_batch, head=self.export.head, top_k=self.top_k,
                            simplify=self.export.simplifier is not None, sampler=self.sampler,
                            size_range=self.input_size_range)

    def run_size(self, asked: tuple[int, int] | None = None, name: str = "the artifact") -> tuple[int, int]:
        """The (height, width) to run at: a fixed-size artifact's own; for a dynamic-size one ``asked`` if it lies
        within its range, else its opt size. One-line error for a size it cannot take."""
        if asked is None:
            return self.input_size
        asked = (int(asked[0]), int(asked[1]))
        if self.input_size_range is None:
            if asked != self.input_size:
                raise RTDetrExportError(f"{name} takes {size_text(self.input_size)} images only (a fixed-size "
                                        f"export); drop the image size or export with --dynamic-size")
            return self.input_size
        if not self.input_size_range.contains(asked):
            raise RTDetrExportError(f"image size {size_text(asked)} is outside {name}'s range "
                                    f"{self.input_size_range}")
        return asked

    def _contract_json(self) -> dict[str, Any]:
        out = {**self.header.to_json(), "model": self.model.to_json(), "method": self.method,
               "sampler": self.sampler.value, "input_size": list(self.input_size),
               "input_size_range": self.input_size_range.to_json() if self.input_size_range else None,
               "classes": list(self.classes), "precision": self.precision, "export": self.export.to_json(),
               "io": self.io.to_json(), "verification": self.verification.to_json() if self.verification else None}
        if self.recipe is not None:
            out["precision_recipe"] = self.recipe.details
        return out

    @staticmethod
    def _contract_fields(data: dict[str, Any], where: str) -> dict[str, Any]:
        header = Header.from_json(data, where)
        size_range = _may(data, "input_size_range", dict, where)
        try:
            size_range = SizeRange.from_json(size_range) if size_range else None
        except (RTDetrExportError, KeyError, TypeError, ValueError):
            raise RecordError(f"{where}: input_size_range is damaged: {size_range!r}") from None
        precision = _need(data, "precision", str, where)
        recipe = _may(data, "precision_recipe", dict, where)
        verification = _may(data, "verification", dict, where)
        try:
            verification = Verification.from_json(verification) if verification else None
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"{where}: verification record is damaged ({exc})") from None
        classes = _need(data, "classes", list, where)
        return dict(header=header, model=ModelRecord.from_json(_need(data, "model", dict, where), where),
                    sampler=sampler_of(data, where), input_size=_size(data.get("input_size"), f"{where} input_size"),
                    input_size_range=size_range, classes=[str(c) for c in classes], precision=precision,
                    export=ExportRecord.from_json(_need(data, "export", dict, where), where),
                    io=IODescription.from_json(_need(data, "io", dict, where), where), verification=verification,
                    recipe=PrecisionRecipe(precision, recipe) if recipe else None)


@dataclass
class OnnxRecord(ArtifactRecord):
    """An ONNX file of ours: the contract plus the op census recorded at export (``inspect`` compares it with
    the graph to tell an edited file)."""

    op_census: dict[str, int] = field(default_factory=dict)
    # Only in the sidecar of a file ``rtdetr-export select`` chose (records/selection.py); the ONNX metadata of
    # that file is the candidate's own record, unchanged. An added key: readers that do not know it ignore it.
    selection: SelectionRecord | None = None

    def to_json(self) -> dict[str, Any]:
        out = {**self._contract_json(), "op_census": dict(self.op_census)}
        if self.selection is not None:
            out["selection"] = self.selection.to_json()
        return out

    @staticmethod
    def describes(data: dict[str, Any]) -> bool:
        """Whether ``data`` (an ONNX file's metadata fields) is one of our records, damaged or not."""
        return data.get("format") == ONNX_FORMAT

    @classmethod
    def from_json(cls, data: Any, where: str = "record") -> "OnnxRecord":
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
        fields = cls._contract_fields(data, where)
        if fields["header"].format != ONNX_FORMAT:
            raise RecordError(f"{where} was not written by `rtdetr-export onnx` (format {fields['header'].format!r})")
        census = _may(data, "op_census", dict, where, {})
        selection = _may(data, "selection", dict, where)
        return cls(**fields, op_census={str(k): int(v) for k, v in census.items() if isinstance(v, int)},
                   selection=SelectionRecord.from_json(selection, f"{where} selection") if selection else None)
