"""What a command does end to end, composed from the layers below: export -> precision -> verify -> write
(``export_onnx``), build engine -> verify -> time -> write (``run_engine_job``), verify a file again
(``verify_artifact``), describe a file (``describe_onnx``), and the ``Detector`` that runs a model or any artifact on images."""

from rtdetr_export.pipeline.detector import Detector, open_detector
from rtdetr_export.pipeline.inspection import OnnxDescription, SplitDescription, describe_onnx, describe_split, is_split
from rtdetr_export.pipeline.onnx import ExportResult, OnnxExportOptions, export_onnx
from rtdetr_export.pipeline.split import SplitExportResult, export_split
from rtdetr_export.pipeline.verification import reference_model, verify_artifact

__all__ = ["Detector", "ExportResult", "OnnxDescription", "OnnxExportOptions", "SplitDescription", "SplitExportResult",
           "describe_onnx", "describe_split", "export_onnx", "export_split", "is_split", "open_detector",
           "reference_model", "verify_artifact"]
