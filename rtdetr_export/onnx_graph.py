"""Small ONNX graph helpers shared by the precision passes and the FP16 emulation runner: element types,
producers, consumers, ordering."""

from __future__ import annotations

import fnmatch
import heapq
from collections import defaultdict
from typing import Iterable

import onnx
from onnx import TensorProto

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16


def element_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every named tensor (inputs, outputs, initializers, intermediates) by strict inference."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]
             if v.type.HasField("tensor_type")}
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


def stores_fp16(model: onnx.ModelProto) -> bool:
    """Whether any tensor of the graph is FP16: an FP16 initializer or a Cast to FP16 (an FP16 or INT8+FP16 file)."""
    return any(t.data_type == FLOAT16 for t in model.graph.initializer) or any(
        node.op_type == "Cast" and any(a.name == "to" and a.i == FLOAT16 for a in node.attribute)
        for node in model.graph.node)


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Tensor name -> the node that writes it."""
    return {out: node for node in model.graph.node for out in node.output if out}


def consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes that read it (graph outputs are not nodes and are not listed)."""
    out: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            if name:
                out[name].append(node)
    return out


def float_outputs(node: onnx.NodeProto, types: dict[str, int]) -> list[str]:
    """The node's outputs that are float32 tensors."""
    return [name for name in node.output if name and types.get(name) == FLOAT]


def matching_nodes(model: onnx.ModelProto, patterns: Iterable[str]) -> set[str]:
    """Names of nodes matching any shell-style pattern (fnmatch, case-sensitive) on the node name."""
    patterns = list(patterns)
    return {node.name for node in model.graph.node
            if any(fnmatch.fnmatchcase(node.name, pattern) for pattern in patterns)}


def topological_sort(model: onnx.ModelProto) -> None:
    """Reorder ``model.graph.node`` in place so every node comes after the producers of its inputs.

    Converters append their Cast nodes at the end, which the checker rejects. Kahn's algorithm that always
    takes the earliest ready node, so an already sorted graph stays as it is.
    """
    nodes = list(model.graph.node)
    made = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    waiting = [0] * len(nodes)
    readers: dict[int, list[int]] = defaultdict(list)
    for i, node in enumerate(nodes):
        parents = {made[name] for name in node.input if name in made}
        waiting[i] = len(parents)
        for parent in parents:
            readers[parent].append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for child in readers[i]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    if len(order) != len(nodes):
        raise ValueError("graph has a cycle")
    del model.graph.node[:]
    model.graph.node.extend(nodes[i] for i in order)
