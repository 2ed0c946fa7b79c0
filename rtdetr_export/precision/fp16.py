"""FP16 mixed precision: decide which nodes stay FP32, then convert the rest with ONNX Runtime's converter.

What stays FP32 (docs/precision.md explains each rule with RT-DETR's failure modes):

1. Numerically sensitive op types (``FP32_OP_TYPES``): normalisation statistics, softmax, the sigmoid /
   exp / log family, top-k selection, rounding, and GridSample (its sampling grid is a box coordinate).
2. Everything that computes a box, a score, a selection key or a gather index: walking back from the
   float outputs, TopK inputs, sampling grids and float->int casts through every op that is not a learned
   layer (Conv / MatMul / Gemm / normalisation / pooling / Resize stop the walk). This is the
   inverse-sigmoid box refinement, query selection, the discrete sampler's cell index, and box decoding.
   Forward from every Floor too, up to and including the first learned layer or reduction: the gather
   bilinear sampler's corner weights (fractional parts, in-bounds masks, times the attention weights) and the
   weighted sum that applies them, so the four reads are weighted as exactly as GridSample's, which stays FP32
   whole (rule 1). Its indices are int64 and never converted.
3. Any node that reads or writes a tensor whose calibration range exceeds ``range_limit`` (|x| above a
   fraction of 65504), because casting such a tensor to FP16 overflows to inf.
4. Nodes the user names (``keep_fp32`` patterns).

The conversion itself is ``onnxruntime.transformers.float16.convert_float_to_float16`` (it ships with the
onnxruntime wheel we already depend on). Two clean-ups follow that it does not do: removing the
FP32 -> FP16 -> FP32 cast pairs it inserts between two FP32 nodes (they would round a tensor both sides
want in FP32), and restoring topological node order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.onnx_graph import (FLOAT, FLOAT16, consumers, element_types, matching_nodes, producers,
                                           topological_sort)

FP16_MAX = 65504.0
# A tensor is kept FP32 when its calibration peak exceeds 1/16 of the FP16 range: calibration images never
# cover every input, and a downstream sum or product of such values would overflow first.
DEFAULT_RANGE_FRACTION = 1.0 / 16

FP32_OP_TYPES = {
    "LayerNormalization": "normalisation statistics (variance) lose precision and overflow in FP16",
    "ReduceMean": "normalisation statistics (decomposed LayerNorm)",
    "Pow": "squares overflow FP16 above 256",
    "Sqrt": "normalisation statistics (decomposed LayerNorm)",
    "Reciprocal": "normalisation statistics (decomposed LayerNorm)",
    "Softmax": "attention weights: exp and the row sum need FP32 range",
    "LogSoftmax": "exp and the row sum need FP32 range",
    "Sigmoid": "scores and box coordinates",
    "Exp": "overflows FP16 above 11",
    "Log": "inverse sigmoid of boxes",
    "TopK": "query and detection selection must not change with rounding",
    "ReduceMax": "selection key of the query selection",
    "Floor": "cell index of the discrete sampler",
    "Ceil": "index arithmetic",
    "Round": "index arithmetic",
    "GridSample": "the sampling grid is a box coordinate; FP16 moves it by up to 1/2048 of the map",
}
# Learned layers and normalisations: the walk back from a precision-critical tensor stops at them.
STOP_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum", "LayerNormalization", "BatchNormalization",
            "InstanceNormalization", "GroupNormalization", "Softmax", "ReduceSum", "ReduceMean", "Resize",
            "MaxPool", "AveragePool", "GlobalAveragePool", "GridSample"}


@dataclass
class Fp16Plan:
    """Which nodes stay FP32 and why (node name -> reason), plus the measured ranges behind rule 3."""

    fp32_nodes: dict[str, str]
    range_limit: float
    over_range: dict[str, float] = field(default_factory=dict)  # tensor -> calibration peak
    keep_fp32: list[str] = field(default_factory=list)


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every unnamed node a unique name; the plan and the reports refer to nodes by name."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.name or node.op_type}__{i}"
        seen.add(node.name)


def constants_to_initializers(model: onnx.ModelProto) -> None:
    """Turn float Constant nodes into initializers, so one mechanism decides each constant's precision."""
    kept = []
    for node in model.graph.node:
        value = [a for a in node.attribute if a.name == "value"]
        if node.op_type == "Constant" and value and value[0].t.data_type == FLOAT:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value[0].t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)


def critical_nodes(model: onnx.ModelProto, types: dict[str, int]) -> set[str]:
    """Nodes computing boxes, scores, selection keys or indices (rule 2 of the module docstring)."""
    made = producers(model)
    sinks = [o.name for o in model.graph.output if types.get(o.name) == FLOAT]
    for node in model.graph.node:
        if node.op_type == "Cast" and types.get(node.output[0]) not in (FLOAT, FLOAT16):
            sinks.append(node.input[0])
        elif node.op_type == "GridSample":
            sinks.append(node.input[1])
        elif node.op_type == "TopK":
            sinks.append(node.input[0])
    found: set[str] = set()
    queue = deque(name for name in sinks if types.get(name) == FLOAT)
    seen = set(queue)
    while queue:
        node = made.get(queue.popleft())
        if node is None or node.op_type in STOP_OPS or node.name in found:
            continue
        found.add(node.name)
        for name in node.input:
            if name and types.get(name) == FLOAT and name not in seen:
                seen.add(name)
                queue.append(name)
    return found


def sampling_weight_nodes(model: onnx.ModelProto, types: dict[str, int]) -> set[str]:
    """Float nodes computed from a Floor's output (rule 2's forward walk): corner weights of the gather bilinear
    sampler, through the weighted sum (the first STOP op on the way, included). A Gather reached through its
    indices reads memory rows, not weights: the walk ends there (the discrete sampler's path ends at once)."""
    readers = consumers(model)
    queue = deque(node for node in model.graph.node if node.op_type == "Floor")
    found: set[str] = set()
    seen = {id(node) for node in queue}
    while queue:
        node = queue.popleft()
        if any(types.get(o) == FLOAT for o in node.output):
            found.add(node.name)
        if node.op_type in STOP_OPS and node.op_type != "Floor":
            continue
        for out in node.output:
            for reader in readers.get(out, []):
                if id(reader) in seen or (reader.op_type in ("Gather", "GatherElements", "GatherND") and
                                          out in reader.input[1:]):
                    continue
                seen.add(id(reader))
                queue.append(reader)
    return found


def plan_fp16(model: onnx.ModelProto, ranges: dict[str, float], keep_fp32: Iterable[str] = (),
              range_fraction: float = DEFAULT_RANGE_FRACTION) -> Fp16Plan:
    """Decide the FP32 nodes of ``model`` (named, constants as initializers) from its calibration ``ranges``."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    types = element_types(model)
    limit = range_fraction * FP16_MAX
    plan: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type in FP32_OP_TYPES:
            plan[node.name] = FP32_OP_TYPES[node.op_type]
        elif node.op_type in DEFAULT_OP_BLOCK_LIST:
            plan[node.name] = "no FP16 kernel in ONNX"
    for name in critical_nodes(model, types):
        plan.setdefault(name, "box / score / selection / index arithmetic")
    for name in sampling_weight_nodes(model, types):
        plan.setdefault(name, "bilinear corner weights and their weighted sum (gather sampler)")

    over = {name: peak for name, peak in ranges.items() if peak > limit}
    init_peaks = {t.name: float(np.abs(numpy_helper.to_array(t)).max(initial=0.0))
                  for t in model.graph.initializer if t.data_type == FLOAT}
    over.update({name: peak for name, peak in init_peaks.items() if peak > FP16_MAX})
    made, readers = producers(model), consumers(model)
    for name, peak in over.items():
        reason = f"reads or writes {name} (calibration peak {peak:.4g} > {limit:.4g})"
        for node in ([made[name]] if name in made else []) + readers.get(name, []):
            plan.setdefault(node.name, reason)
    patterns = list(keep_fp32)
    for pattern in patterns:
        if not matching_nodes(model, [pattern]):
            raise RTDetrExportError(f"--keep-fp32 {pattern!r} matches no node of the graph "
                                    "(patterns are shell-style, e.g. '*/encoder/*')")
    for name in matching_nodes(model, patterns):
        plan.setdefault(name, "kept FP32 by --keep-fp32")
    return Fp16Plan(plan, limit, over, patterns)


def split_shared_initializers(model: onnx.ModelProto, fp32_nodes: set[str]) -> None:
    """Give FP32 nodes their own copy of float initializers that FP16 nodes also read, so they stay exact."""
    users = consumers(model)
    by_name = {t.name: t for t in model.graph.initializer}
    for name, tensor in list(by_name.items()):
        if tensor.data_type != FLOAT or name not in users:
            continue
        readers = users[name]
        if {n.name in fp32_nodes for n in readers} != {True, False}:
            continue
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        copy.name = f"{name}__fp32"
        model.graph.initializer.append(copy)
        for node in readers:
            if node.name in fp32_nodes:
                for i, value in enumerate(node.input):
                    if value == name:
                        node.input[i] = copy.name


def remove_rounding_pairs(model: onnx.ModelProto, types: dict[str, int]) -> int:
    """Bypass Cast(to FP16) -> Cast(to FP32) pairs on FP32 tensors; returns how many were bypassed."""
    made, readers = producers(model), consumers(model)
    outputs = {o.name for o in model.graph.output}
    removed, detached = set(), set()  # nodes deleted; nodes that no longer read the FP16 tensor
    for node in model.graph.node:
        if node.op_type != "Cast" or _cast_to(node) != FLOAT:
            continue
        first = made.get(node.input[0])
        if first is None or first.op_type != "Cast" or _cast_to(first) != FLOAT16 or \
                types.get(first.input[0]) != FLOAT:
            continue
        if node.output[0] in outputs:  # the name must stay: pass the FP32 tensor through unchanged
            node.op_type, node.input[0] = "Identity", first.input[0]
            del node.attribute[:]
            detached.add(id(node))
        else:
            for reader in readers.get(node.output[0], []):
                for i, value in enumerate(reader.input):
                    if value == node.output[0]:
                        reader.input[i] = first.input[0]
            removed.add(id(node))
            detached.add(id(node))
        if all(id(r) in detached for r in readers.get(first.output[0], [])) and first.output[0] not in outputs:
            removed.add(id(first))
    kept = [n for n in model.graph.node if id(n) not in removed]
    count = len(model.graph.node) - len(kept)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return count


def _cast_to(node: onnx.NodeProto) -> int:
    return next(a.i for a in node.attribute if a.name == "to")


def convert_fp16(model: onnx.ModelProto, plan: Fp16Plan) -> onnx.ModelProto:
    """The mixed-precision graph: FP32 inputs/outputs, ``plan.fp32_nodes`` in FP32, everything else FP16."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    work = onnx.ModelProto()
    work.CopyFrom(model)
    split_shared_initializers(work, set(plan.fp32_nodes))
    del work.graph.value_info[:]
    converted = convert_float_to_float16(work, keep_io_types=True, op_block_list=[],
                                         node_block_list=sorted(plan.fp32_nodes), max_finite_val=FP16_MAX)
    topological_sort(converted)
    try:
        types = element_types(converted)
    except onnx.shape_inference.InferenceError as exc:
        raise RTDetrExportError(f"FP16 conversion produced an inconsistent graph: {str(exc).splitlines()[0]}") \
            from None
    remove_rounding_pairs(converted, types)
    del converted.graph.value_info[:]
    return converted


def fp16_recipe(plan: Fp16Plan, before: onnx.ModelProto, after: onnx.ModelProto,
                calibration: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready description of how the FP16 graph was made (stored in the provenance)."""
    types = element_types(after)
    fp16_nodes = [n for n in after.graph.node if n.op_type != "Cast" and
                  any(types.get(o) == FLOAT16 for o in n.output)]
    by_reason: dict[str, list[str]] = {}
    for name, reason in sorted(plan.fp32_nodes.items()):
        by_reason.setdefault(reason, []).append(name)
    return {
        "library": f"onnxruntime.transformers.float16 (onnxruntime {version('onnxruntime')})",
        "fp32_op_types": sorted(FP32_OP_TYPES),
        "range_limit": plan.range_limit,
        "range_calibration": calibration,
        "over_range_tensors": {k: round(v, 3) for k, v in sorted(plan.over_range.items())},
        "keep_fp32": plan.keep_fp32,
        "nodes": {"total": len(before.graph.node), "fp16": len(fp16_nodes), "fp32": len(plan.fp32_nodes),
                  "casts_added": sum(n.op_type == "Cast" for n in after.graph.node) -
                  sum(n.op_type == "Cast" for n in before.graph.node)},
        "fp32_nodes": by_reason,
        "io": "float32 (casts inside the graph)",
    }
