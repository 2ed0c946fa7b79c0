"""Precision on the ONNX graph: FP16 mixed precision and INT8 Q/DQ, each with a recipe for the provenance.

TensorRT 10 (strongly typed networks) and 11 take precision from the graph itself, so the same file
serves both: see docs/precision.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import onnx

from rtdetr_export.artifact.options import INT8_FLOATS, INT8_TARGETS, PRECISIONS, PrecisionOptions
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.precision.calibration import CalibrationSet, calibration_set
from rtdetr_export.precision.int8 import Int8Options

@dataclass
class PrecisionResult:
    """The converted graph and how it was made."""

    model: onnx.ModelProto
    recipe: dict[str, Any] = field(default_factory=dict)


def apply_precision(model: onnx.ModelProto, head: str, size: tuple[int, int], options: PrecisionOptions,
                    log: Callable[[str], None] = lambda message: None) -> PrecisionResult:
    """Convert an FP32 graph of ours to ``options.target``; FP32 is returned unchanged."""
    options.validate()
    if options.target == "fp32":
        return PrecisionResult(model, {})
    calibration = calibration_set(size, options.calib_count, options.calib_images)
    announce(calibration, options, log)
    return convert_precision(model, calibration, calibration.feeds(head), options, log)


def convert_precision(model: onnx.ModelProto, calibration: CalibrationSet, feeds: list[dict[str, np.ndarray]],
                      options: PrecisionOptions, log: Callable[[str], None] = lambda message: None) -> PrecisionResult:
    """Convert an FP32 graph to ``options.target`` (FP16 or INT8), its ranges and scales measured on ``feeds``
    (the graph's own inputs for each of ``calibration``'s images)."""
    if options.target == "fp16":
        return _to_fp16(model, feeds, calibration, options)
    return _to_int8(model, feeds, calibration, options, log)


def announce(calibration: CalibrationSet, options: PrecisionOptions, log: Callable[[str], None]) -> None:
    what = "activation ranges" if options.target == "fp16" else f"INT8 scales ({options.calib_method})"
    if calibration.source == "synthetic":
        log(f"note: no --calib-images: measuring {what} on {len(calibration.images)} synthetic scenes; "
            "calibrate on real images before deploying")
    else:
        log(f"measuring {what} on {len(calibration.images)} images from {calibration.source}")


def _to_fp16(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], calibration: CalibrationSet,
             options: PrecisionOptions) -> PrecisionResult:
    from rtdetr_export.precision import fp16
    from rtdetr_export.precision.ranges import activation_ranges

    work = onnx.ModelProto()
    work.CopyFrom(model)
    fp16.name_nodes(work)
    fp16.constants_to_initializers(work)
    ranges = activation_ranges(work, feeds)
    plan = fp16.plan_fp16(work, ranges, options.keep_fp32)
    converted = fp16.convert_fp16(work, plan)
    return PrecisionResult(converted, fp16.fp16_recipe(plan, work, converted, calibration.to_json()))


def _to_int8(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], calibration: CalibrationSet,
             options: PrecisionOptions, log: Callable[[str], None]) -> PrecisionResult:
    from rtdetr_export.precision.int8 import int8_recipe, qdq_coverage, quantize_int8

    int8 = Int8Options(options.calib_method, tuple(options.int8_exclude), options.int8_default_exclusions)
    if options.int8_target == "cpu":
        return _to_int8_cpu(model, feeds, calibration, int8)
    quantized, excluded = quantize_int8(model, feeds, int8)
    missing = [name for name in qdq_coverage(quantized)["float"] if name not in excluded]
    if missing:
        raise RTDetrExportError(f"INT8: {len(missing)} layers were left without Q/DQ although not excluded "
                                f"(first: {missing[0]})")
    recipe = {"target": "tensorrt", **int8_recipe(int8, excluded, quantized, calibration.to_json())}
    if options.int8_float == "fp32":
        return PrecisionResult(quantized, {**recipe, "float": "fp32"})
    from rtdetr_export.precision.fp16 import fp16_recipe
    from rtdetr_export.precision.int8_fp16 import int8_with_fp16, subnormal_scales

    converted, plan = int8_with_fp16(quantized, feeds, tuple(options.keep_fp32), log)
    recipe["float"] = "fp16"
    described = fp16_recipe(plan, quantized, converted, recipe["calibration"])
    recipe["fp16"] = {key: value for key, value in described.items() if key not in ("range_calibration", "io")}
    recipe["fp16"]["subnormal_scales"] = subnormal_scales(converted)
    recipe["nodes"] = {**recipe["nodes"], **qdq_coverage_counts(converted)}
    return PrecisionResult(converted, recipe)


def qdq_coverage_counts(model: onnx.ModelProto) -> dict[str, int]:
    from rtdetr_export.precision.int8 import qdq_coverage

    coverage = qdq_coverage(model)
    return {"quantized": len(coverage["quantized"]), "float": len(coverage["float"])}


def _to_int8_cpu(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], calibration: CalibrationSet,
                 int8: Int8Options) -> PrecisionResult:
    from rtdetr_export.precision.int8_cpu import (CPU_QUANTIZED_OPS, cpu_int8_recipe, fused_integer_ops,
                                                  quantize_int8_cpu)

    quantized, excluded = quantize_int8_cpu(model, feeds, int8)
    fused = fused_integer_ops(quantized)
    # The point of this layout is integer kernels; a file ONNX Runtime would run in float must not be written.
    if not fused:
        raise RTDetrExportError("INT8 (cpu target): ONNX Runtime fused no Q/DQ group into an integer kernel")
    return PrecisionResult(quantized, cpu_int8_recipe(int8, excluded, quantized, calibration.to_json(),
                                                      CPU_QUANTIZED_OPS, fused))


__all__ = ["INT8_FLOATS", "INT8_TARGETS", "PRECISIONS", "PrecisionOptions", "PrecisionResult", "apply_precision",
           "convert_precision"]
