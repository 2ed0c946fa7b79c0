"""Run an FP16 graph on ONNX Runtime CPU as FP32 compute with FP16 storage, the way we verify FP16 on CPU.

ONNX Runtime's CPU provider has no FP16 kernel for Conv, MatMul, Add, Mul, Div, Sub, ReduceSum and others on
x86 (measured: docs/precision.md). For those it inserts casts and computes in FP32, and at its default
optimisation level it then drops the casts between two such nodes, so most FP16 tensors are never rounded:
running the FP16 file directly would report parity closer to FP32 than any FP16 runtime delivers.

The emulation graph makes the rounding explicit instead: every FP16 initializer holds its FP16 value in
FP32, every node computes in FP32, and every tensor the FP16 graph stores in FP16 goes through
Cast(to FP16) -> Cast(to FP32) right after it is produced. So each tensor carries exactly the FP16 value of
an FP32 computation on FP16 inputs, overflow to inf included. Not emulated: FP16 accumulation inside a
Conv/MatMul/reduction (FP32 here; TensorRT picks per kernel) and a fused kernel's unrounded intermediates.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rtdetr_export.artifact import load_onnx
from rtdetr_export.backends.onnxruntime_runner import OnnxRuntimeRunner
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.onnx_graph import FLOAT, FLOAT16, element_types

SUFFIX_RAW, SUFFIX_HALF = "__emu_fp32", "__emu_fp16"


def fp16_emulation_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """The FP32 graph that computes what ``model`` computes, rounding every FP16 tensor to FP16 storage."""
    types = element_types(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    for i, tensor in enumerate(graph.initializer):
        if tensor.data_type == FLOAT16:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(
                numpy_helper.to_array(tensor).astype(np.float32), tensor.name))
    for value in [*graph.input, *graph.output]:
        if value.type.tensor_type.elem_type == FLOAT16:
            raise RTDetrExportError("FP16 graph inputs/outputs are not supported; ours keep FP32 I/O")
    nodes = []
    for node in graph.node:
        _widen_attributes(node)
        nodes.append(node)
        if node.op_type == "Constant":
            continue  # an FP16 constant widened to FP32 is already exactly representable in FP16
        for i, name in enumerate(node.output):
            if name and types.get(name) == FLOAT16:
                node.output[i] = name + SUFFIX_RAW
                nodes.append(helper.make_node("Cast", [name + SUFFIX_RAW], [name + SUFFIX_HALF], to=FLOAT16,
                                              name=name + SUFFIX_HALF))
                nodes.append(helper.make_node("Cast", [name + SUFFIX_HALF], [name], to=FLOAT,
                                              name=name + SUFFIX_RAW))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return out


def _widen_attributes(node: onnx.NodeProto) -> None:
    """FP16 type attributes and attribute tensors of one node -> FP32."""
    for attr in node.attribute:
        if node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT16:
            attr.i = FLOAT
        if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == FLOAT16:
            attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float32), attr.t.name))
        if attr.name == "dtype" and attr.i == FLOAT16:
            attr.i = FLOAT


class Fp16EmulationRunner(OnnxRuntimeRunner):
    """Runs an FP16 ONNX file as its emulation graph (``fp16_emulation_model``) on ONNX Runtime CPU."""

    name = "onnxruntime-cpu-fp16-emulated"

    def activate(self) -> None:
        self.session = self.make_session(fp16_emulation_model(load_onnx(self.path)).SerializeToString())

