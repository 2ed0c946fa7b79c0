"""INT8 for TensorRT with FP16 elsewhere: the FP16 policy applied around an INT8 Q/DQ graph.

A strongly typed TensorRT network runs every layer in the type the graph gives it. An INT8 Q/DQ graph whose
unquantized layers are FP32 therefore runs them in FP32 on the GPU, which is why INT8 engines built that
way are barely faster than FP16 ones (rf-detr#351: 2.1 ms INT8 vs 2.2 ms FP16). So after quantization the
float part of the graph goes through the same FP16 plan as an FP16 export (precision/fp16.py): sensitive op
types, box/score/index arithmetic, over-range tensors and ``--keep-fp32`` patterns stay FP32, the rest FP16.

The Q/DQ nodes themselves: from opset 19 QuantizeLinear reads and DequantizeLinear writes FP16 (FP16
scales), so they are converted like any other node and each quantized layer reads DQ(FP16) directly. Before
opset 19 their scales must be FP32, so they stay FP32 with casts around them (valid everywhere; whether
TensorRT fuses Q/DQ through the casts is its business, hence the note to export at opset 19).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx

from rtdetr_export.onnx_graph import FLOAT16, element_types
from rtdetr_export.precision import fp16
from rtdetr_export.precision.ranges import activation_ranges

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
FP16_QDQ_OPSET = 19
QDQ_FP32_REASON = "QuantizeLinear/DequantizeLinear take FP32 scales before opset 19 (casts around them)"
# FP16's smallest normal number: a weight scale below it is stored subnormal (fewer significant bits).
FP16_MIN_NORMAL = 2.0 ** -14


def graph_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def int8_with_fp16(quantized: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], keep_fp32: tuple[str, ...] = (),
                   log: Callable[[str], None] = lambda message: None) -> tuple[onnx.ModelProto, fp16.Fp16Plan]:
    """The Q/DQ graph with its float layers converted by the FP16 plan; returns it and the plan."""
    work = onnx.ModelProto()
    work.CopyFrom(quantized)
    fp16.name_nodes(work)
    fp16.constants_to_initializers(work)
    plan = fp16.plan_fp16(work, activation_ranges(work, feeds), keep_fp32)
    opset = graph_opset(work)
    for node in work.graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        if opset < FP16_QDQ_OPSET:
            plan.fp32_nodes[node.name] = QDQ_FP32_REASON
        elif plan.fp32_nodes.get(node.name, "").startswith("box / score"):
            # The walk back from a box/score tensor may pass a DQ that feeds only a quantized layer's input;
            # the layer is the boundary (a stop op), so its Q/DQ follow it into FP16.
            del plan.fp32_nodes[node.name]
    if opset < FP16_QDQ_OPSET:
        log(f"note: opset {opset} < {FP16_QDQ_OPSET}: Q/DQ stay FP32 with casts to the FP16 layers around them; "
            f"export with --opset {FP16_QDQ_OPSET} for FP16 Q/DQ")
    converted = fp16.convert_fp16(work, plan)
    return converted, plan


def unquantized_compute(model: onnx.ModelProto) -> dict[str, int]:
    """Every node that computes float values outside Q/DQ and casts: node name -> element type of its output.

    Shape plumbing (Shape, Reshape, Gather of indices...) is included when its output is float: it still
    moves activations, and an FP32 one means an FP32 tensor in the engine.
    """
    types = element_types(model)
    out = {}
    for node in model.graph.node:
        if node.op_type in (*QDQ_OPS, "Cast", "Identity", "Constant"):
            continue
        kinds = [types.get(name) for name in node.output if name]
        floats = [k for k in kinds if k in (onnx.TensorProto.FLOAT, FLOAT16)]
        if floats:
            out[node.name] = floats[0]
    return out


def subnormal_scales(model: onnx.ModelProto) -> list[str]:
    """FP16 Q/DQ scale initializers with a value below FP16's smallest normal number (precision lost)."""
    from onnx import numpy_helper

    scales = {node.input[1] for node in model.graph.node if node.op_type in QDQ_OPS}
    return sorted(t.name for t in model.graph.initializer if t.name in scales and t.data_type == FLOAT16
                  and float(np.abs(numpy_helper.to_array(t)).min(initial=1.0)) < FP16_MIN_NORMAL)
