"""A module is traced once per process: a second export of the same weights, structure, attributes and inputs
reuses the graph, which is the graph a new trace writes; anything the trace reads that differs traces again."""

from __future__ import annotations

from collections import OrderedDict

import onnx
import pytest
import torch

from rtdetr_export.export import trace_cache
from rtdetr_export.export.torch_export import GraphOptions, export_graph, trace_to_onnx
from micro import micro_model


class Reduced(torch.nn.Module):
    """A linear layer reduced by sum or max: ``reduction`` is a plain attribute the trace reads."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        self.reduction = "sum"

    def forward(self, x):
        y = self.linear(x)
        return y.sum(-1, keepdim=True) if self.reduction == "sum" else y.amax(-1, keepdim=True)


@pytest.fixture
def empty_cache(monkeypatch):
    """Nothing remembered from here on, and the session's remembered graphs are left as they were."""
    monkeypatch.setattr(trace_cache, "_graphs", OrderedDict())


def trace(module, batch: int = 2, opset: int = 17) -> onnx.ModelProto:
    return trace_to_onnx(module, (torch.ones(batch, 4),), ["x"], ["y"], opset, dynamic_batch=False)


def traces_in(action) -> tuple[int, int]:
    """(traced, reused) while ``action`` runs."""
    before = trace_cache.counts()
    action()
    after = trace_cache.counts()
    return after["traced"] - before["traced"], after["reused"] - before["reused"]


def test_the_same_module_and_inputs_are_traced_once_and_the_reused_graph_is_a_new_traces_graph(empty_cache):
    torch.manual_seed(0)
    module = Reduced().eval()
    graphs = []
    assert traces_in(lambda: graphs.append(trace(module))) == (1, 0)
    graphs[0].graph.node.pop()  # a caller changes its copy in place; what is remembered is not that copy
    assert traces_in(lambda: graphs.append(trace(module))) == (0, 1)
    trace_cache.clear()
    assert traces_in(lambda: graphs.append(trace(module))) == (1, 0)
    assert graphs[1].SerializeToString() == graphs[2].SerializeToString()


def test_a_changed_weight_attribute_input_or_opset_is_traced_again(empty_cache):
    torch.manual_seed(0)
    module = Reduced().eval()
    first = trace(module)
    with torch.no_grad():
        module.linear.bias.add_(1.0)
    assert traces_in(lambda: trace(module)) == (1, 0)
    module.reduction = "max"
    graph = []
    assert traces_in(lambda: graph.append(trace(module))) == (1, 0)
    assert "ReduceMax" in {node.op_type for node in graph[0].graph.node}
    assert "ReduceMax" not in {node.op_type for node in first.graph.node}
    assert traces_in(lambda: trace(module, batch=3)) == (1, 0)
    assert traces_in(lambda: trace(module, opset=18)) == (1, 0)


def test_a_module_holding_what_the_key_cannot_read_is_traced_every_time(empty_cache):
    """A forward hook can change what the trace records, and its effect cannot be read from the function."""
    module = Reduced().eval()
    module.linear.register_forward_hook(lambda layer, inputs, output: output * 2)
    assert traces_in(lambda: (trace(module), trace(module))) == (2, 0)


def test_the_least_recently_used_graph_is_forgotten_first_when_the_bytes_run_out(empty_cache, monkeypatch):
    torch.manual_seed(0)
    module = Reduced().eval()
    size = len(trace(module).SerializeToString())
    monkeypatch.setattr(trace_cache, "CAPACITY_BYTES", 2 * size + size // 2)  # room for two such graphs
    trace(module, batch=3)
    assert traces_in(lambda: trace(module)) == (0, 1)  # batch 2 is now the most recently used
    trace(module, batch=4)  # pushes out batch 3
    assert traces_in(lambda: (trace(module), trace(module, batch=4))) == (0, 2)
    assert traces_in(lambda: trace(module, batch=3)) == (1, 0)


def test_a_new_model_object_of_the_same_weights_reuses_the_trace_and_it_is_a_new_traces_graph(monkeypatch):
    """What ``select`` and a precision export do: a new model object of the same weights, the same graph options.
    The first export uses the session's cache (micro_fp32 and its FP16/INT8 siblings trace this graph)."""
    options = GraphOptions(dynamic_batch=True, simplify=False)
    first = export_graph(micro_model(), options).graph
    assert traces_in(lambda: export_graph(micro_model(), options)) == (0, 1)
    monkeypatch.setattr(trace_cache, "_graphs", OrderedDict())
    fresh = []
    assert traces_in(lambda: fresh.append(export_graph(micro_model(), options).graph)) == (1, 0)
    assert first.SerializeToString() == fresh[0].SerializeToString()


def test_an_export_is_remembered_under_the_model_and_the_options_the_trace_reads(empty_cache):
    """An export is keyed on the model as given (its deploy copy is then not made again) and on every graph option
    but simplification, which comes after the trace."""
    model = micro_model()
    options = GraphOptions(simplify=False)
    assert traces_in(lambda: export_graph(model, options)) == (1, 0)
    assert traces_in(lambda: export_graph(model, GraphOptions(simplify=True))) == (0, 1)
    assert traces_in(lambda: export_graph(model, GraphOptions(simplify=False, head="detections", top_k=10))) == (1, 0)
    assert traces_in(lambda: export_graph(model, GraphOptions(simplify=False, head="detections", top_k=20))) == (1, 0)
    assert traces_in(lambda: export_graph(model, GraphOptions(simplify=False, dynamic_batch=True))) == (1, 0)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert traces_in(lambda: export_graph(model, options)) == (1, 0)
