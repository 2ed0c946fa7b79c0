"""The artifact file format, once: typed records (records/; the only module that reads a sidecar by key), the
options a record rebuilds (options.py), the verification record (verification.py), and the files themselves
(files.py: ONNX loading, sidecar paths, metadata, ``open_artifact``)."""

from rtdetr_export.artifact.files import (ENGINE_SUFFIXES, ONNX_SUFFIXES, OPENVINO_SUFFIXES, PREFIX, embed_metadata,
                                          embed_split_part, io_description, ir_weights_path, load_onnx, make_feed,
                                          onnx_record, open_artifact, read_metadata, read_sidecar, sidecar_path,
                                          split_paths, split_sidecar, write_sidecar)
from rtdetr_export.artifact.options import GraphOptions, PrecisionOptions
from rtdetr_export.artifact.records import (ENGINE_FORMAT, ONNX_FORMAT, READABLE_SCHEMAS, SCHEMA_VERSION, SPLIT_FORMAT,
                                            ArtifactRecord, EngineRecord, ExportRecord, Header, IODescription,
                                            IrFiles, Latency, ModelRecord, OnnxRecord, OnnxSource, OpenVinoRecord,
                                            OpenVinoRuntime, PrecisionRecipe, ProfileShape, RecordError, SourceRecord,
                                            SplitGraph, SplitPart, SplitRecord, TensorSpec, record_from_json)
from rtdetr_export.artifact.verification import BatchComparison, Check, Verification, VerificationInputs

__all__ = ["ArtifactRecord", "BatchComparison", "Check", "ENGINE_FORMAT", "ENGINE_SUFFIXES", "EngineRecord",
           "ExportRecord", "GraphOptions", "Header", "IODescription", "IrFiles", "Latency", "ModelRecord",
           "ONNX_FORMAT", "ONNX_SUFFIXES", "OPENVINO_SUFFIXES", "OnnxRecord", "OnnxSource", "OpenVinoRecord",
           "OpenVinoRuntime", "PREFIX", "PrecisionOptions", "PrecisionRecipe",
           "ProfileShape", "READABLE_SCHEMAS", "RecordError", "SCHEMA_VERSION", "SPLIT_FORMAT", "SourceRecord",
           "SplitGraph", "SplitPart", "SplitRecord", "TensorSpec", "Verification", "VerificationInputs",
           "embed_metadata",
           "embed_split_part", "io_description", "ir_weights_path", "load_onnx", "make_feed", "onnx_record",
           "open_artifact",
           "read_metadata", "read_sidecar", "record_from_json", "sidecar_path", "split_paths", "split_sidecar",
           "write_sidecar"]
