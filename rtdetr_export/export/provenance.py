"""Provenance of an artifact: the JSON sidecar next to it and the same facts in ONNX metadata_props."""

from __future__ import annotations

import dataclasses
import datetime
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import onnx

from rtdetr_export import __version__
from rtdetr_export.errors import RTDetrExportError

FORMAT = "rtdetr-export/onnx"
PREFIX = "rtdetr_export."
LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxslim", "numpy", "transformers", "tensorrt")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shaped an artifact (those installed)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def build_provenance(model: Any, export: dict[str, Any], precision: str, io: dict[str, Any],
                     op_census: dict[str, int], verification: dict | None) -> dict[str, Any]:
    """Everything a user needs to trust and reproduce an artifact."""
    source = dataclasses.asdict(model.source)
    path = source.pop("path")
    source["file"] = Path(path).name if path else None
    config = model.config
    return {
        "format": FORMAT,
        "schema_version": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tool": {"name": "rtdetr-export", "version": __version__},
        "libraries": library_versions(),
        "model": {"source": source, "config": config.to_dict()},
        "method": config.decoder_method,
        "input_size": list(config.image_size),
        "classes": config.class_names,
        "precision": precision,
        "export": export,
        "io": io,
        "op_census": op_census,
        "verification": verification,
    }


def embed_metadata(model: onnx.ModelProto, provenance: dict[str, Any]) -> None:
    """Store each provenance field as a JSON ``metadata_props`` entry named ``rtdetr_export.<field>``."""
    kept = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in provenance.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = PREFIX + key, json.dumps(value)


def read_metadata(model: onnx.ModelProto) -> dict[str, Any]:
    """The provenance embedded by ``embed_metadata``; empty if the file was not made by us."""
    out = {}
    for prop in model.metadata_props:
        if prop.key.startswith(PREFIX):
            out[prop.key[len(PREFIX):]] = json.loads(prop.value)
    return out


def sidecar_path(artifact: str | Path) -> Path:
    return Path(artifact).with_suffix(".json")


def load_artifact_provenance(onnx_path: str | Path) -> dict[str, Any]:
    """Provenance of one of our ONNX files (metadata first, then the sidecar); error if it is not ours."""
    path = Path(onnx_path)
    if not path.is_file():
        raise RTDetrExportError(f"{path}: no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends from protobuf
        raise RTDetrExportError(f"{path} is not an ONNX file ({type(exc).__name__})") from None
    if not model.graph.node:
        raise RTDetrExportError(f"{path} is not an ONNX model (empty graph)")
    meta = read_metadata(model)
    if meta.get("format") != FORMAT:
        raise RTDetrExportError(f"{path} was not exported by rtdetr-export (no {PREFIX}format metadata); "
                                "export it with `rtdetr-export onnx`")
    return meta
