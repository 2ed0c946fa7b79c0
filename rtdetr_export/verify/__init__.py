"""Comparisons of any two runners' outputs, and verification of exported artifacts."""

from rtdetr_export.verify.compare import PRECISION_THRESHOLDS, Thresholds, compare_detections, compare_raw
from rtdetr_export.verify.verification import compare_runners, verify_onnx

__all__ = ["PRECISION_THRESHOLDS", "Thresholds", "compare_detections", "compare_raw", "compare_runners",
           "verify_onnx"]
