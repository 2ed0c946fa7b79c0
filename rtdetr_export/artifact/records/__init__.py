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
  (``encoder`` and ``decoder``: file, sha256, io, op census) and ``host_step`` (its ``version``). OpenVINO IRs
  (format ``rtdetr-export/openvino-ir``, sidecar ``MODEL.xml.json``) first appear in schema 4 too: the contract
  of the ONNX file they were converted from plus ``ir`` (the .xml and .bin with their sha256), ``onnx`` (that
  file's name, sha256 and verdict), ``runtime`` (OpenVINO version, weight storage, the inference-precision hint
  verification ran under, the CPU and whether it computes bf16) and ``op_census``.

The record module is this package: fields.py (the field rules, header, I/O), contract.py (the shared contract and
an ONNX file's record), engine.py, split.py and openvino.py (an engine's, a split artifact's, an OpenVINO IR's),
selection.py (why ``rtdetr-export select`` chose a file: only in that file's sidecar, as ``selection``). Nothing
outside it reads a record's JSON by key (tests/test_architecture.py).
"""

from __future__ import annotations

from typing import Any

from rtdetr_export.artifact.records.contract import (ArtifactRecord, ExportRecord, ModelRecord, OnnxRecord,
                                                     PrecisionRecipe, SourceRecord, sampler_of)
from rtdetr_export.artifact.records.engine import EngineRecord, Latency, OnnxSource, ProfileShape
from rtdetr_export.artifact.records.fields import (DEFAULT_TOP_K, ENGINE_FORMAT, LIBRARIES, ONNX_FORMAT,
                                                   OPENVINO_FORMAT, READABLE_SCHEMAS, SCHEMA_VERSION, SPLIT_FORMAT,
                                                   SPLIT_PART_FORMAT, SPLIT_PARTS, Header, IODescription, RecordError,
                                                   TensorSpec, library_versions)
from rtdetr_export.artifact.records.openvino import IR_WEIGHTS, IrFiles, OpenVinoRecord, OpenVinoRuntime
from rtdetr_export.artifact.records.selection import CandidateResult, SelectionRecord
from rtdetr_export.artifact.records.split import SplitGraph, SplitPart, SplitRecord

__all__ = ["ArtifactRecord", "CandidateResult", "DEFAULT_TOP_K", "ENGINE_FORMAT", "EngineRecord", "ExportRecord", "Header",
           "IODescription", "IR_WEIGHTS", "IrFiles", "LIBRARIES", "Latency", "ModelRecord", "ONNX_FORMAT",
           "OPENVINO_FORMAT", "OnnxRecord", "OnnxSource", "OpenVinoRecord", "OpenVinoRuntime",
           "PrecisionRecipe", "ProfileShape", "READABLE_SCHEMAS", "RecordError", "SCHEMA_VERSION", "SPLIT_FORMAT",
           "SPLIT_PARTS", "SPLIT_PART_FORMAT", "SelectionRecord", "SourceRecord", "SplitGraph", "SplitPart", "SplitRecord", "TensorSpec",
           "library_versions", "record_from_json", "sampler_of"]


def record_from_json(data: Any, where: str = "record") -> ArtifactRecord:
    """An ONNX file's, a split artifact's, an OpenVINO IR's or an engine's record, as its ``format`` says."""
    if isinstance(data, dict) and data.get("format") == ENGINE_FORMAT:
        return EngineRecord.from_json(data, where)
    if OpenVinoRecord.describes(data):
        return OpenVinoRecord.from_json(data, where)
    if SplitRecord.describes(data):
        return SplitRecord.from_json(data, where)
    return OnnxRecord.from_json(data, where)

