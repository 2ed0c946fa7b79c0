"""Activation ranges: the largest |value| of every float tensor over calibration inputs, from ONNX Runtime."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import onnx

from rtdetr_export.onnx_graph import FLOAT, element_types


def activation_ranges(model: onnx.ModelProto, feeds: Iterable[dict[str, np.ndarray]],
                      types: dict[str, int] | None = None) -> dict[str, float]:
    """Max |x| per float32 tensor (graph inputs and every node output) over ``feeds``; inf if non-finite."""
    import onnxruntime as ort

    types = types if types is not None else element_types(model)
    initializers = {t.name for t in model.graph.initializer}
    graph_outputs = {o.name for o in model.graph.output}
    names = [out for node in model.graph.node if node.op_type != "Constant" for out in node.output
             if out and types.get(out) == FLOAT and out not in initializers]
    augmented = onnx.ModelProto()
    augmented.CopyFrom(model)
    augmented.graph.output.extend(onnx.helper.make_tensor_value_info(name, FLOAT, None)
                                  for name in names if name not in graph_outputs)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Fusions would hide the intermediate tensors we ask for; basic folding leaves them alone.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(augmented.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = [o.name for o in session.get_outputs() if o.name in set(names)]
    inputs = [i.name for i in session.get_inputs()]
    peaks = {name: 0.0 for name in wanted}
    for feed in feeds:
        for name in inputs:
            if types.get(name) == FLOAT:
                peaks[name] = max(peaks.get(name, 0.0), _peak(feed[name]))
        for name, value in zip(wanted, session.run(wanted, {k: feed[k] for k in inputs})):
            peaks[name] = max(peaks[name], _peak(value))
    return peaks


def _peak(value: np.ndarray) -> float:
    if value.size == 0:
        return 0.0
    if not np.isfinite(value).all():
        return float("inf")
    return float(np.abs(value).max())
