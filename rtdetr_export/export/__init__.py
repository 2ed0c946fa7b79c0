"""torch -> ONNX with checks, verification and provenance."""

from rtdetr_export.export.onnx_export import ExportResult, OnnxExportOptions, export_onnx

__all__ = ["ExportResult", "OnnxExportOptions", "export_onnx"]
