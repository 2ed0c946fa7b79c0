"""Checks every exported graph must pass: ONNX checker, op census, forbidden ops, finite constants."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
from onnx import numpy_helper

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.sampler import Sampler

# Control flow and data-dependent shapes defeat TensorRT's and NPUs' static planning.
ALWAYS_FORBIDDEN = ("Loop", "If", "NonZero", "Scan")


def op_census(model: onnx.ModelProto) -> dict[str, int]:
    """Count of every op type in the main graph, most frequent first."""
    return dict(Counter(node.op_type for node in model.graph.node).most_common())


def non_finite_initializers(model: onnx.ModelProto) -> list[str]:
    """Names of initializers and Constant nodes that hold inf or nan."""
    bad = []
    tensors = [(t.name, t) for t in model.graph.initializer]
    for node in model.graph.node:
        if node.op_type == "Constant":
            tensors += [(node.output[0], a.t) for a in node.attribute if a.name == "value"]
    for name, tensor in tensors:
        array = numpy_helper.to_array(tensor)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad.append(name)
    return bad


def check_graph(model: onnx.ModelProto, sampler: Sampler) -> dict[str, int]:
    """Run the full checker and our structural rules; returns the op census or raises RTDetrExportError.

    GridSample is forbidden unless the graph samples with it (gridsample-bilinear): the point of the other
    samplers is a graph without it."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise RTDetrExportError(f"exported graph fails onnx.checker: {str(exc).splitlines()[0]}") from None
    census = op_census(model)
    forbidden = [op for op in ALWAYS_FORBIDDEN if op in census]
    if not sampler.has_gridsample and "GridSample" in census:
        forbidden.append("GridSample")
    if forbidden:
        raise RTDetrExportError(f"exported graph contains forbidden ops: {', '.join(forbidden)}")
    bad = non_finite_initializers(model)
    if bad:
        raise RTDetrExportError(f"exported graph has non-finite constants: {', '.join(bad[:5])}")
    return census
