"""PyTorch -> ONNX graph: trace a head with torch.onnx, simplify with onnxslim, check the graph.

This layer makes graphs in memory; writing, precision and verification are composed by
``rtdetr_export.pipeline.onnx`` above it.
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass, replace
from importlib.metadata import version

import onnx
import torch

from rtdetr_export.artifact.options import DEFAULT_OPSET, MAX_OPSET, GraphOptions
from rtdetr_export.artifact.records import ExportRecord
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export import trace_cache
from rtdetr_export.export.graph_checks import check_graph
from rtdetr_export.model import RTDETRv2, SizeRange, prepare_for_deploy
from rtdetr_export.model.config import size_text
from rtdetr_export.model.heads import INPUTS, OUTPUTS, wrap
from rtdetr_export.model.sampler import Sampler

# Re-exported: the options live with the records that rebuild them (artifact/options.py).
__all__ = ["DEFAULT_OPSET", "MAX_OPSET", "ExportedGraph", "GraphOptions", "export_graph", "trace_to_onnx"]


@dataclass
class ExportedGraph:
    """A checked graph, the sampler it reads with, and the facts the record keeps about how it was made."""

    graph: onnx.ModelProto
    op_census: dict[str, int]
    export: ExportRecord
    sampler: Sampler


def example_inputs(head: str, batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """Seeded tracing inputs for a head at an input size (height, width)."""
    images = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0))
    if "orig_target_sizes" not in INPUTS[head]:
        return (images,)
    return images, torch.tensor([[size[1], size[0]]] * batch, dtype=torch.int64)


def dynamic_axes(input_names: list[str], output_names: list[str], dynamic_batch: bool,
                 dynamic_size: bool) -> dict[str, dict[int, str]] | None:
    """torch.onnx's ``dynamic_axes``: "batch" on every tensor's first axis, "height"/"width" on the images'."""
    axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in input_names + output_names} \
        if dynamic_batch else {}
    if dynamic_size:
        axes.setdefault("images", {}).update({2: "height", 3: "width"})
    return axes or None


def trace_to_onnx(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], input_names: list[str],
                  output_names: list[str], opset: int, dynamic_batch: bool,
                  dynamic_size: bool = False) -> onnx.ModelProto:
    """torch.onnx's TorchScript exporter (fast, and exact for dynamic axes), in memory.

    The tracer records every size read from a tensor's shape, so values derived from a dynamic axis stay graph
    computations as long as the model does not turn them into Python ints (``RTDETRv2.compute_sizes_in_graph``).
    Also the peer path's export (bench/peer.py), so both sides of that comparison are traced alike. A module
    and inputs this process traced before are not traced again (trace_cache.py).
    """
    dynamic = dynamic_axes(input_names, output_names, dynamic_batch, dynamic_size)
    # The same module and inputs trace to the same graph: the split export's two graphs, the peer path, or an API
    # user tracing one module several times trace it once per process (trace_cache.py).
    return trace_cache.traced((input_names, output_names, opset, dynamic), module, inputs,
                              lambda: _trace(module, inputs, input_names, output_names, opset, dynamic))


def _trace(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], input_names: list[str],
           output_names: list[str], opset: int, dynamic: dict | None) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, buffer, input_names=input_names, output_names=output_names,
                          opset_version=opset, dynamic_axes=dynamic, do_constant_folding=True, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


def with_static_output_dims(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with each output's traced placeholder dimensions ("Addlogits_dim_1") replaced by the number ONNX's
    own shape inference computes for them (with data propagation: the Shape -> Gather -> Reshape arithmetic the
    tracer records), so an unsimplified graph states [batch, 300, 80] as a simplified one does: Triton configs
    and engine profiles read the query and class axes from the outputs. Only for a graph onnxslim does not
    simplify (which infers the shapes itself): 0.5 s on r18vd. Axes that stay symbolic (batch, and what a
    dynamic-size graph derives from height and width) are left as they are; a graph the inference cannot take is
    returned unchanged (the shapes are declarations, the graph computes the same either way)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # the inference's own checks; nothing about the graph depends on it
        return model
    for output, known in zip(model.graph.output, inferred.graph.output):
        for dim, value in zip(output.type.tensor_type.shape.dim, known.type.tensor_type.shape.dim):
            if dim.HasField("dim_param") and value.HasField("dim_value"):
                dim.dim_value = value.dim_value  # setting the value clears the placeholder name (one field)
    return model


def simplify(model: onnx.ModelProto, dynamic_size: bool = False) -> tuple[onnx.ModelProto, str]:
    """Constant-fold and clean the graph with onnxslim; returns (model, "onnxslim <version>").

    A dynamic-size graph first gets ONNX Runtime's symbolic shape inference: onnxslim alone loses the query axis
    behind the Expand/Reshape shapes computed from the traced sizes (outputs [batch, ?, ?] instead of
    [batch, 300, 80]) and so cannot fold the shape arithmetic that depends only on it (tiny: 880 -> 819 nodes).
    Static graphs fold completely without it and are simplified exactly as before.
    """
    import onnxslim

    if dynamic_size:
        model = _symbolic_shapes(model)
    return onnxslim.slim(model), f"onnxslim {version('onnxslim')}"


def _symbolic_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with symbolic shapes inferred, or unchanged where the inference gives up (shapes are only hints)."""
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        return SymbolicShapeInference.infer_shapes(model, auto_merge=True) or model
    except Exception:  # the inference's own asserts; the graph is still valid without the hints
        return model


def torch_to_onnx(model: RTDETRv2, options: GraphOptions) -> onnx.ModelProto:
    """Trace a deploy-fused copy of ``model`` under ``options.head``, once per process for the same model and
    trace-relevant options (select's candidates, a precision export and its FP32 sibling, an API user's several
    files from one model).

    Remembered under the model as given, before its copy is made: the copy, the deploy fusion, the sampler and the
    head wrapper are fixed functions of the model and the options, so a model whose digest and options match
    traces to the same graph, and a reuse skips them (r18vd on the 2-core AVX-512 EPYC: 0.17-0.20 s; a reuse now
    takes 0.11 s, the first trace 2.3 s). Simplification comes after the trace and is not part of the key."""
    traced = replace(options, simplify=True, sampler=options.sampler_for(model.config.decoder_method))
    return trace_cache.traced(("torch_to_onnx", traced), model, (), lambda: _trace_deployed(model, options))


def _trace_deployed(model: RTDETRv2, options: GraphOptions) -> onnx.ModelProto:
    deployed = prepare_for_deploy(copy.deepcopy(model))
    deployed.set_sampler(options.sampler_for(model.config.decoder_method))
    if options.dynamic_size:
        deployed.compute_sizes_in_graph()
    module = wrap(deployed, options.head, options.top_k).eval()
    # Tracing at batch 2 keeps the exporter from specialising size-1 dimensions into the graph.
    trace_batch = 2 if options.dynamic_batch else options.batch
    inputs = example_inputs(options.head, trace_batch, model.config.image_size)
    names = INPUTS[options.head], OUTPUTS[options.head]
    return _trace(module, inputs, *names, options.opset,
                  dynamic_axes(*names, options.dynamic_batch, options.dynamic_size))


def input_text(size: tuple[int, int], size_range: SizeRange | None) -> str:
    """How progress lines name the input: "480x640", or "dynamic 320x320..640x640 (opt 480x640)"."""
    return size_text(size) if size_range is None else f"dynamic {size_range}"


def export_graph(model: RTDETRv2, options: GraphOptions | None = None,
                 log=lambda message: None) -> ExportedGraph:
    """Trace, simplify (unless told not to) and check ``model``'s graph; nothing is written."""
    options = options or GraphOptions()
    config = model.config
    options.validate(config.decoder_method, config.num_queries, config.num_classes)
    if options.size_range is not None and tuple(config.image_size) != options.size_range.opt:
        raise RTDetrExportError(f"the model is built for {size_text(config.image_size)} but the size range's opt is "
                                f"{size_text(options.size_range.opt)}: build it at the opt size")
    smallest = options.size_range.min if options.size_range else tuple(config.image_size)
    cells = sum((smallest[0] // s) * (smallest[1] // s) for s in config.level_strides)
    if cells < config.num_queries:  # query selection takes the top num_queries encoder cells
        raise RTDetrExportError(f"input {size_text(smallest)} has {cells} encoder cells, fewer than the model's "
                                f"{config.num_queries} queries: use a larger size")
    batch = "dynamic" if options.dynamic_batch else str(options.batch)
    sampler = options.sampler_for(config.decoder_method)
    log(f"exporting {options.head} head with torch.onnx (opset {options.opset}, batch {batch}, method "
        f"{config.decoder_method} as {sampler}, input {input_text(config.image_size, options.size_range)})")
    graph = torch_to_onnx(model, options)
    simplifier = None
    if options.simplify:
        log("simplifying with onnxslim")
        graph, simplifier = simplify(graph, options.dynamic_size)
    else:
        log("simplification skipped (--no-simplify)")
        graph = with_static_output_dims(graph)
    log("checking the graph (onnx.checker, op census, forbidden ops, finite constants)")
    census = check_graph(graph, sampler)
    return ExportedGraph(graph, census, export_record(options, simplifier), sampler)


def export_record(options: GraphOptions, simplifier: str | None) -> ExportRecord:
    """What the record keeps of ``options`` (the sampler and size range are fields of the record itself)."""
    return ExportRecord(opset=options.opset, head=options.head,
                        top_k=options.top_k if options.head == "detections" else None,
                        batch=None if options.dynamic_batch else options.batch, dynamic_batch=options.dynamic_batch,
                        dynamic_size=options.dynamic_size, simplifier=simplifier, exporter="torch.onnx")
