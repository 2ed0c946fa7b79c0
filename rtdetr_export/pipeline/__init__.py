"""What a command does end to end, composed from the layers below: export -> precision -> verify -> write
(``export_onnx``), build engine -> verify -> time -> write (``run_engine_job``), verify a file again
(``verify_artifact``), an OpenVINO IR from an ONNX file (``export_openvino``), describe a file (``describe_onnx``),
and the ``Detector`` that runs a model or any artifact on images."""

from rtdetr_export.pipeline.detector import Detector, open_detector
from rtdetr_export.pipeline.inspection import (IrDescription, OnnxDescription, SplitDescription, describe_onnx,
                                               describe_openvino, describe_split, is_openvino, is_split)
from rtdetr_export.pipeline.openvino import OpenVinoExportOptions, OpenVinoExportResult, export_openvino
from rtdetr_export.pipeline.onnx import ExportResult, OnnxExportOptions, export_onnx
from rtdetr_export.pipeline.split import SplitExportResult, export_split
from rtdetr_export.pipeline.verification import reference_model, verify_artifact

__all__ = ["Detector", "ExportResult", "IrDescription", "OnnxDescription", "OnnxExportOptions", "OpenVinoExportOptions",
           "OpenVinoExportResult", "SplitDescription", "SplitExportResult", "describe_onnx", "describe_openvino",
           "describe_split", "export_onnx", "export_openvino", "export_split", "is_openvino", "is_split",
           "open_detector",
           "reference_model", "verify_artifact"]
