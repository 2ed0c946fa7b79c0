"""The record reader's field rules (a wrong or missing field is a one-line error naming it), the header every
record starts with, and the I/O tensors."""

from __future__ import annotations

import datetime
import platform
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from rtdetr_export import __version__
from rtdetr_export.errors import RTDetrExportError

ONNX_FORMAT = "rtdetr-export/onnx"
ENGINE_FORMAT = "rtdetr-export/tensorrt-engine"
SPLIT_FORMAT = "rtdetr-export/onnx-split"
SPLIT_PART_FORMAT = "rtdetr-export/onnx-split-part"  # each graph's own metadata: which part, which sidecar
SPLIT_PARTS = ("encoder", "decoder")
OPENVINO_FORMAT = "rtdetr-export/openvino-ir"  # an OpenVINO IR (MODEL.xml + MODEL.bin), sidecar MODEL.xml.json
SCHEMA_VERSION = 4
READABLE_SCHEMAS = (1, 2, 3, 4)
LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxslim", "numpy", "transformers", "tensorrt", "openvino",
             "nncf")
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
