"""What an artifact is, as typed records: the one module that reads a sidecar's or metadata's JSON by key.

An ONNX file carries an ``OnnxRecord`` (sidecar ``MODEL.json`` and the same fields in its ONNX metadata); a
TensorRT engine an ``EngineRecord`` (sidecar ``MODEL.engine.json``); a split artifact (two graphs with query
selection on the host between them) a ``SplitRecord`` (sidecar ``MODEL.json`` naming ``MODEL.encoder.onnx`` and
``MODEL.decoder.onnx`` by sha256; each graph's metadata holds only a ``SplitPart`` pointing back to it). All share
the model contract (``ArtifactRecord``): where the weights came from and the architecture, the sampler, input size
(range), classes, precision and recipe, export options, I/O tensors and the verification measured when the file was
made.

Every consumer (verify, the engine job, debug-precision, eval, bench, predict, Triton, inspect) takes a record
and reads attributes; ``from_json`` reads every schema written so far:

- 1: the first releases (verification entries without their judged metric: ``artifact.verification`` infers it);
- 2: adds ``kind`` to each verification run and ``metric`` to each output entry;
- 3: adds ``input_size_range`` (null: a fixed-size file) and ``export.dynamic_size``;
- 4: the sampler is one value, top-level ``sampler`` (``export.bilinear_op`` is no longer written). Older files
  name it by ``method`` and ``export.bilinear_op`` (absent: GridSample, the only bilinear op before gathers).
  Split artifacts (format ``rtdetr-export/onnx-split``) first appear in schema 4: the contract plus ``graphs``
  (``encoder`` and ``decoder``: file, sha256, io, op census) and ``host_step`` (its ``version``).
"""

from __future__ import annotations

import datetime
import platform
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from rtdetr_export import __version__
from rtdetr_export.artifact.options import DEFAULT_CALIBRATION_COUNT, GraphOptions, PrecisionOptions
from rtdetr_export.artifact.verification import Verification
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.config import ModelConfig, SizeRange, size_text
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.model.source import HubRevision, WeightSource

ONNX_FORMAT = "rtdetr-export/onnx"
ENGINE_FORMAT = "rtdetr-export/tensorrt-engine"
SPLIT_FORMAT = "rtdetr-export/onnx-split"
SPLIT_PART_FORMAT = "rtdetr-export/onnx-split-part"  # each graph's own metadata: which part, which sidecar
SPLIT_PARTS = ("encoder", "decoder")
SCHEMA_VERSION = 4
READABLE_SCHEMAS = (1, 2, 3, 4)
LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxslim", "numpy", "transformers", "tensorrt", "openvino")
DEFAULT_TOP_K = 300


class RecordError(RTDetrExportError):
    """A sidecar or metadata record that is not one of ours, or is damaged."""


def _need(data: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``data[key]`` if it is of ``kind``; else a one-line error naming the field."""
    if not isinstance(data, dict):
        raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
    if key not in data:
        raise RecordError(f"{where}: missing field {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise RecordError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _may(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = None) -> Any:
    """``data[key]`` if present and not null (then of ``kind``), else ``default``."""
    if data.get(key) is None:
        return default
    return _need(data, key, kind, where)


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _size(value: Any, where: str) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
        raise RecordError(f"{where}: expected [height, width], got {value!r}")
    return int(value[0]), int(value[1])


@dataclass(frozen=True)
class Header:
    """The fields every record starts with: format, schema, creation time, tool and library versions."""

    format: str
    schema_version: int = SCHEMA_VERSION
    created: str = ""
    tool: str = "rtdetr-export"
    tool_version: str = __version__
    libraries: dict[str, str] = field(default_factory=dict)

    @classmethod
    def now(cls, format: str) -> "Header":
        return cls(format, SCHEMA_VERSION, datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "rtdetr-export", __version__, library_versions())

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "schema_version": self.schema_version, "created": self.created,
                "tool": {"name": self.tool, "version": self.tool_version}, "libraries": dict(self.libraries)}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> "Header":
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or isinstance(version, bool):
            raise RecordError(f"{where}: schema_version must be an integer, got {version!r}")
        if version not in READABLE_SCHEMAS:
            raise RecordError(f"{where}: sidecar schema version {version} is newer than this rtdetr-export reads "
                              f"({', '.join(map(str, READABLE_SCHEMAS))}); upgrade rtdetr-export")
        tool = _may(data, "tool", dict, where, {})
        return cls(_need(data, "format", str, where), version, str(data.get("created") or ""),
                   str(tool.get("name") or "?"), str(tool.get("version") or "?"),
                   {str(k): str(v) for k, v in _may(data, "libraries", dict, where, {}).items()})


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shaped an artifact (those installed)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, shape (ints, symbolic names, or "?"; None if unknown) and element type."""

    name: str
    shape: tuple[Any, ...] | None
    dtype: str

    @property
    def batch_range(self) -> tuple[int, int] | None:
        """(min, max) batch of a static leading dimension; None when the batch is a graph dimension."""
        first = self.shape[0] if self.shape else None
        return None if isinstance(first, str) or first in (0, None) else (int(first), int(first))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": None if self.shape is None else list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "TensorSpec":
        shape = _may(data, "shape", list, where)
        return cls(_need(data, "name", str, where), None if shape is None else tuple(shape),
                   _need(data, "dtype", str, where))


@dataclass(frozen=True)
class IODescription:
    """A graph's inputs and outputs, in order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def __getitem__(self, name: str) -> TensorSpec:
        for spec in self.inputs + self.outputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]

    def to_json(self) -> dict[str, Any]:
        return {"inputs": [s.to_json() for s in self.inputs], "outputs": [s.to_json() for s in self.outputs]}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "IODescription":
        return cls(*(tuple(TensorSpec.from_json(v, f"{where} io.{kind}") for v in _need(data, kind, list, where))
                     for kind in ("inputs", "outputs")))


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


@dataclass(frozen=True)
class ModelRecord:
    """The weights' source and the full architecture (``config.version``: RT-DETR v1 or v2)."""

    source: SourceRecord
    config: ModelConfig

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source.to_json(), "config": self.config.to_dict()}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "ModelRecord":
        try:
            config = ModelConfig.from_dict(_need(data, "config", dict, where))
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

    def to_json(self) -> dict[str, Any]:
        return {**self._contract_json(), "op_census": dict(self.op_census)}

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
        return cls(**fields, op_census={str(k): int(v) for k, v in census.items() if isinstance(v, int)})


@dataclass(frozen=True)
class ProfileShape:
    """One input's optimisation-profile shapes."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_json(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "ProfileShape":
        return cls(*(tuple(int(d) for d in _need(data, key, list, where)) for key in ("min", "opt", "max")))


@dataclass(frozen=True)
class Latency:
    """Engine latency measured when it was built (milliseconds)."""

    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    images_per_s: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**self.details, "batch": self.batch, "p50_ms": self.p50_ms, "p90_ms": self.p90_ms,
                "p99_ms": self.p99_ms, "mean_ms": self.mean_ms, "images_per_s": self.images_per_s}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Latency":
        keys = ("batch", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "images_per_s")
        values = [_need(data, key, (int, float), f"{where} latency") for key in keys]
        return cls(int(values[0]), *map(float, values[1:]), {k: v for k, v in data.items() if k not in keys})


@dataclass(frozen=True)
class OnnxSource:
    """The ONNX file an engine was built from."""

    file: str
    sha256: str
    verification_passed: bool | None

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "verification_passed": self.verification_passed}


@dataclass
class EngineRecord(ArtifactRecord):
    """A TensorRT engine of ours: the contract of the ONNX file it was built from (input size and range are the
    profile's), plus the TensorRT version, GPU, build settings, profile, bound tensors and latency."""

    tensorrt: str = ""
    gpu: dict[str, Any] = field(default_factory=dict)
    onnx: OnnxSource | None = None
    build: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, ProfileShape] = field(default_factory=dict)
    io_tensors: list[dict[str, Any]] = field(default_factory=list)  # as TensorRT binds them (it may narrow int64)
    latency: Latency | None = None

    @classmethod
    def built_from(cls, source: OnnxRecord, /, **engine: Any) -> "EngineRecord":
        """The engine's record: ``source``'s contract (its header replaced) and the engine's own fields (among
        them ``onnx``, the ONNX file's name and hash: so the record is taken positionally)."""
        contract = {name: getattr(source, name) for name in ArtifactRecord.__dataclass_fields__}
        contract["header"] = Header.now(ENGINE_FORMAT)
        return cls(**{**contract, **engine})

    @property
    def batch_range(self) -> tuple[int, int] | None:
        """(min, max) batch of the profile's first input."""
        first = self.profile.get(self.io.inputs[0].name) if self.io.inputs else None
        return (first.min[0], first.max[0]) if first else None

    @property
    def tensor_types(self) -> dict[str, str]:
        """Element type of each tensor as the engine binds it where it says, else as the ONNX graph has it."""
        types = {spec.name: spec.dtype for spec in self.io.inputs + self.io.outputs}
        types.update({str(t["name"]): str(t["dtype"]) for t in self.io_tensors if "name" in t and "dtype" in t})
        return types

    def to_json(self) -> dict[str, Any]:
        return {**self._contract_json(), "tensorrt": self.tensorrt, "gpu": self.gpu,
                "onnx": self.onnx.to_json() if self.onnx else None, "head": self.head, "build": self.build,
                "profile": {name: shape.to_json() for name, shape in self.profile.items()},
                "io_tensors": self.io_tensors, "latency": self.latency.to_json() if self.latency else None}

    @classmethod
    def from_json(cls, data: Any, where: str = "record") -> "EngineRecord":
        if not isinstance(data, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != ENGINE_FORMAT:
            raise RecordError(f"{where} was not written by `rtdetr-export trt`")
        fields = cls._contract_fields(data, where)
        onnx = _may(data, "onnx", dict, where)
        latency = _may(data, "latency", dict, where)
        return cls(**fields, tensorrt=str(data.get("tensorrt") or ""), gpu=_may(data, "gpu", dict, where, {}),
                   onnx=OnnxSource(str(onnx.get("file")), str(onnx.get("sha256")), onnx.get("verification_passed"))
                   if onnx else None, build=_may(data, "build", dict, where, {}),
                   profile={str(name): ProfileShape.from_json(shape, f"{where} profile")
                            for name, shape in _may(data, "profile", dict, where, {}).items()},
                   io_tensors=[t for t in _may(data, "io_tensors", list, where, []) if isinstance(t, dict)],
                   latency=Latency.from_json(latency, where) if latency else None)


@dataclass(frozen=True)
class SplitGraph:
    """One graph of a split artifact: its file name (beside the sidecar), sha256, I/O and op census."""

    file: str
    sha256: str
    io: IODescription
    op_census: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "io": self.io.to_json(), "op_census": dict(self.op_census)}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "SplitGraph":
        census = _may(data, "op_census", dict, where, {})
        return cls(Path(_need(data, "file", str, where)).name, _need(data, "sha256", str, where),
                   IODescription.from_json(_need(data, "io", dict, where), where),
                   {str(k): int(v) for k, v in census.items() if isinstance(v, int)})


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
        parts = {name: SplitGraph.from_json(_need(graphs, name, dict, f"{where} graphs"), f"{where} graphs.{name}")
                 for name in SPLIT_PARTS}
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


def record_from_json(data: Any, where: str = "record") -> ArtifactRecord:
    """An ONNX file's, a split artifact's or an engine's record, as its ``format`` says."""
    if isinstance(data, dict) and data.get("format") == ENGINE_FORMAT:
        return EngineRecord.from_json(data, where)
    if SplitRecord.describes(data):
        return SplitRecord.from_json(data, where)
    return OnnxRecord.from_json(data, where)


def with_verification(record: ArtifactRecord, verification: Verification | None) -> ArtifactRecord:
    """A copy of ``record`` holding ``verification``."""
    return replace(record, verification=verification)
