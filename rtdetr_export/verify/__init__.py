"""Comparisons of any two runners' outputs, with typed results, and verification of an ONNX file."""

from rtdetr_export.verify.agreement import AgreementThresholds, compare_agreement
from rtdetr_export.verify.compare import PRECISION_THRESHOLDS, Thresholds, compare_detections, compare_raw, \
    judged_precision, thresholds_for
from rtdetr_export.artifact.verification import BatchComparison, Check, Verification, VerificationInputs
from rtdetr_export.verify.inputs import choose_inputs
from rtdetr_export.verify.verification import (VerificationPlan, compare_outputs, compare_runners, verify_candidate,
                                              verify_onnx, verify_split_graphs)

__all__ = ["AgreementThresholds", "BatchComparison", "Check", "PRECISION_THRESHOLDS", "Thresholds", "Verification", "VerificationInputs",
           "VerificationPlan", "choose_inputs",
           "compare_agreement", "compare_detections", "compare_outputs", "compare_raw", "compare_runners",
           "judged_precision", "thresholds_for", "verify_candidate", "verify_onnx",
           "verify_split_graphs"]
