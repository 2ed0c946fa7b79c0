"""A TensorRT engine's record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rtdetr_export.artifact.records.fields import (ENGINE_FORMAT, RecordError, Header, _may, _need)
from rtdetr_export.artifact.records.contract import ArtifactRecord, OnnxRecord


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
