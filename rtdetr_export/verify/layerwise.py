"""Layer-wise comparison of a reduced-precision graph with its FP32 graph, as Polygraphy's "mark all" does.

Both graphs come from the same export, so every tensor of the FP32 graph keeps its name in the FP16/INT8
graph (the passes only add Q/DQ and casts). Every float node output of the FP32 graph is made a graph output
of both, both run on ONNX Runtime CPU on the same inputs (the candidate through the FP16 emulation when it
stores FP16 tensors, since ORT CPU would compute most FP16 ops in FP32), and each node gets:

- ``error``: relative L2 error of its output, ||candidate - fp32|| / ||fp32|| over all inputs;
- ``introduced``: its error minus the largest error of its float inputs, i.e. what this node added;
- ``precision``: what it runs in in the candidate (int8 for a Q/DQ-fed Conv/MatMul/Gemm, fp16, fp32).

Only nodes that run reduced (int8 or fp16) can be kept in float, so those are the culprit candidates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np
import onnx

from rtdetr_export.backends.fp16_emulation import fp16_emulation_model
from rtdetr_export.model.parts import part_of
from rtdetr_export.onnx_graph import FLOAT, FLOAT16, element_types, producers, stores_fp16

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")


@dataclass
class LayerError:
    """One node of the FP32 graph compared with the same node of the candidate."""

    node: str
    op: str
    part: str
    pattern: str          # shell pattern on node names covering the part (the flag's value)
    precision: str        # int8, fp16 or fp32 in the candidate
    error: float          # relative L2 error of the output against FP32
    introduced: float     # error minus the largest error of its float inputs
    max_abs: float

    def to_json(self) -> dict:
        return asdict(self)


def _session(model: onnx.ModelProto, names: list[str]):
    import onnxruntime as ort

    marked = onnx.ModelProto()
    marked.CopyFrom(model)
    present = {o.name for o in marked.graph.output}
    marked.graph.output.extend(onnx.helper.make_tensor_value_info(n, FLOAT, None) for n in names if n not in present)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Fusions would hide the intermediate tensors we ask for; basic folding leaves them alone.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(marked.SerializeToString(), options, providers=["CPUExecutionProvider"])


def candidate_precision(model: onnx.ModelProto) -> dict[str, str]:
    """Tensor name -> int8 / fp16 / fp32: how the candidate computes the node that writes it."""
    types, made = element_types(model), producers(model)

    def dequantized(name: str) -> bool:
        node = made.get(name)
        while node is not None and node.op_type == "Cast":
            node = made.get(node.input[0])
        return node is not None and node.op_type == "DequantizeLinear"

    out = {}
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS and all(dequantized(n) for n in node.input[:2]):
            kind = "int8"
        elif any(types.get(name) == FLOAT16 for name in node.output if name):
            kind = "fp16"
        else:
            kind = "fp32"
        for name in node.output:
            out[name] = kind
    return out


def layer_errors(reference: onnx.ModelProto, candidate: onnx.ModelProto,
                 feeds: Iterable[dict[str, np.ndarray]]) -> list[LayerError]:
    """Per-node errors of ``candidate`` against the FP32 ``reference``, in the reference's node order."""
    ref_types = element_types(reference)
    kinds = candidate_precision(candidate)
    cand_tensors = {name for node in candidate.graph.node for name in node.output}
    nodes = [n for n in reference.graph.node if n.op_type != "Constant"]
    names = sorted({o for n in nodes for o in n.output if o and ref_types.get(o) == FLOAT and o in cand_tensors})
    runnable = fp16_emulation_model(candidate) if stores_fp16(candidate) else candidate
    ref_session, cand_session = _session(reference, names), _session(runnable, names)
    inputs = [i.name for i in ref_session.get_inputs()]
    diff2 = dict.fromkeys(names, 0.0)
    ref2 = dict.fromkeys(names, 0.0)
    peak = dict.fromkeys(names, 0.0)
    for feed in feeds:
        feed = {k: feed[k] for k in inputs}
        for name, a, b in zip(names, ref_session.run(names, feed), cand_session.run(names, feed)):
            d = np.nan_to_num(a.astype(np.float64) - b.astype(np.float64), nan=np.inf)
            diff2[name] += float(np.square(d).sum())
            ref2[name] += float(np.square(a.astype(np.float64)).sum())
            peak[name] = max(peak[name], float(np.abs(d).max(initial=0.0)))
    error = {n: float(np.sqrt(diff2[n]) / max(np.sqrt(ref2[n]), 1e-12)) for n in names}
    rows = []
    for node in nodes:
        outs = [o for o in node.output if o in error]
        if not outs:
            continue
        worst = max(outs, key=lambda o: error[o])
        upstream = max((error[i] for i in node.input if i in error), default=0.0)
        part = part_of(node.name or worst)
        rows.append(LayerError(node.name or worst, node.op_type, part.label, part.pattern,
                               kinds.get(worst, "fp32"), error[worst], error[worst] - upstream, peak[worst]))
    return rows


def first_jump(rows: list[LayerError]) -> LayerError | None:
    """The earliest reduced-precision node that adds at least half of the largest error any node adds."""
    reduced = [r for r in rows if r.precision != "fp32"]
    if not reduced:
        return None
    largest = max(r.introduced for r in reduced)
    if largest <= 0:
        return None
    return next(r for r in reduced if r.introduced >= 0.5 * largest)
