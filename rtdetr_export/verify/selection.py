"""Query selection among tied scores: which encoder cells an ONNX Runtime or OpenVINO candidate kept, and the
reference re-run with them.

Where several encoder cells compute the same feature (a dead level of untrained weights, or the same zeroed memory),
their selection scores are equal up to float noise, and each runtime's rounding decides which of them make the
top-k: no tie rule can make two runtimes agree on values they compute differently in the last bit. Such a
candidate is not wrong, it chose other queries. So when a comparison fails, the candidate's own choice is read from
its graph (the decoder's TopK indices, made a graph output in a copy: of the ONNX graph for ONNX Runtime, of the
model OpenVINO read for OpenVINO; a split artifact's runner says what its host step kept), and if it differs from the reference's only among cells scored within TIE_TOLERANCE of the k-th, the
reference is re-run with that choice (``RTDETRv2.observe_selection``). The run is excused only if that re-run
matches within the same limits; the count of cells chosen differently is recorded (``reselected_queries``).
"""

from __future__ import annotations

import numpy as np
import onnx
import torch

from rtdetr_export.artifact import load_onnx
from rtdetr_export.backends import OnnxRuntimeRunner
from rtdetr_export.backends.openvino_runner import OpenVinoRunner
from rtdetr_export.backends.split_runner import SplitRunner
from rtdetr_export.model.parts import part_of

# Selection scores this close to the k-th are tied: float32 runtimes computing the same cell differ by ~5e-7 on
# them (measured on a v1 model with a dead coarse level, ONNX Runtime vs PyTorch), real score gaps are far larger.
TIE_TOLERANCE = 1e-5
QUERY_SELECTION_TOPK = "query selection (top-k)"  # model/parts.py's label of the selection's TopK


def selection_graph(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """A copy of ``model`` that also outputs the decoder's query-selection indices as ``_selected``, or None
    where the graph has no single query-selection TopK."""
    # By part, not by "decoder" in the name: D-FINE's LQE heads have TopKs of their own in the decoder's scope.
    nodes = [node for node in model.graph.node
             if node.op_type == "TopK" and part_of(node.name).label == QUERY_SELECTION_TOPK]
    if len(nodes) != 1:
        return None
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.node.append(onnx.helper.make_node("Identity", [nodes[0].output[1]], ["_selected"]))
    copy.graph.output.append(onnx.helper.make_tensor_value_info("_selected", onnx.TensorProto.INT64, None))
    return copy


def candidate_selection(candidate: OnnxRuntimeRunner | OpenVinoRunner | SplitRunner,
                        feed: dict[str, np.ndarray]) -> np.ndarray | None:
    """[N, k] the encoder cells ``candidate`` kept for ``feed``, in its order; None if its graph does not say.
    A split artifact selects on the host, so its runner says."""
    if isinstance(candidate, SplitRunner):
        return candidate.selection(feed)
    if isinstance(candidate, OpenVinoRunner):
        return openvino_selection(candidate, feed)
    graph = selection_graph(load_onnx(candidate.path))
    if graph is None:
        return None
    session = candidate.make_session(graph.SerializeToString())
    names = [i.name for i in session.get_inputs()]
    return session.run(["_selected"], {name: feed[name] for name in names})[0]


def openvino_selection(candidate: OpenVinoRunner, feed: dict[str, np.ndarray]) -> np.ndarray | None:
    """As ``candidate_selection``, for OpenVINO: the model it read (from an ONNX file or an IR, whose ops keep the
    ONNX node names) with the selection TopK's indices added as an output, compiled with the candidate's hint and
    threads, so its kernels and their rounding are the candidate's."""
    import openvino as ov

    model = ov.Core().read_model(str(candidate.path))
    nodes = [op for op in model.get_ordered_ops()
             if op.get_type_name() == "TopK" and part_of(op.get_friendly_name()).label == QUERY_SELECTION_TOPK]
    if len(nodes) != 1:
        return None
    model.add_outputs([nodes[0].output(1)])  # appended: the compiled model's last output
    compiled = candidate.compile(model)
    inputs = {port: feed[name] for port in compiled.inputs for name in port.get_names() if name in feed}
    return np.asarray(compiled(inputs)[compiled.outputs[-1]]).astype(np.int64)


class TiedSelection:
    """A selection observer: the candidate's cells where they differ from the reference's only among tied scores
    (then ``reselected`` counts the cells chosen differently), else the reference's own (``refused``)."""

    def __init__(self, chosen: np.ndarray):
        self.chosen = chosen
        self.reselected = 0
        self.refused = False

    def __call__(self, scores: torch.Tensor, topk: torch.Tensor) -> torch.Tensor:
        chosen = torch.from_numpy(self.chosen).to(topk.device)
        if chosen.shape != topk.shape:
            self.refused = True
            return topk
        kth = scores.gather(1, topk[:, -1:]).squeeze(1)
        for b in range(topk.shape[0]):
            ours, theirs = set(topk[b].tolist()), set(chosen[b].tolist())
            differing = torch.tensor(sorted(ours ^ theirs), dtype=torch.int64)
            if len(differing) and float((scores[b, differing] - kth[b]).abs().max()) > TIE_TOLERANCE:
                self.refused = True
                return topk
            self.reselected += len(theirs - ours)
        return chosen
