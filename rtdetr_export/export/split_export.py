"""PyTorch -> the two graphs of a split artifact: cell scoring (graph 1) and query decoding (graph 2).

Query selection runs on the host between them (imaging/host_step.py), so neither graph holds TopK or
GatherElements (D-FINE's graph 2 writes its LQE's top-k with Max/Min: model/split.py says why); both are traced
from the model's own parts (model/split.py), simplified and checked like every graph, then checked for the ops
edge runtimes lack. Writing and verification are pipeline/split.py's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import onnx
import torch

from rtdetr_export.artifact.options import GraphOptions
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export.graph_checks import check_graph
from rtdetr_export.export.torch_export import (ExportedGraph, example_inputs, export_record, simplify, trace_to_onnx,
                                               with_static_output_dims)
from rtdetr_export.imaging.host_step import select_queries
from rtdetr_export.model import RTDETRv2, prepare_for_deploy
from rtdetr_export.model.config import ModelConfig, size_text
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.model.split import CELL_OUTPUTS, QUERY_INPUTS, CellScoring, QueryDecoding

# What the split exists to avoid (ncnn lacks TopK and GatherElements, NPUs reject TopK), on top of the ops every
# graph is refused (export/graph_checks.py).
SPLIT_FORBIDDEN = ("TopK", "GatherElements", "NonZero", "Loop", "If")
DECODER_OUTPUTS = ["logits", "pred_boxes"]


@dataclass
class SplitGraphs:
    """Graph 1 (images -> per-cell memory, targets, logits, reference boxes) and graph 2 (selected queries ->
    logits, boxes), each checked."""

    encoder: ExportedGraph
    decoder: ExportedGraph


def check_split_graph(graph: onnx.ModelProto, sampler: Sampler, which: str) -> dict[str, int]:
    """``check_graph`` plus the split's own rule: none of ``SPLIT_FORBIDDEN``; returns the op census."""
    census = check_graph(graph, sampler)
    found = [op for op in SPLIT_FORBIDDEN if op in census]
    if found:
        raise RTDetrExportError(f"the split's {which} graph contains {', '.join(found)}, which it exists to avoid")
    return census


def validate_split(model: RTDETRv2, options: GraphOptions) -> None:
    """What a split export cannot take, refused before any work."""
    config = model.config
    options.validate(config.decoder_method, config.num_queries, config.num_classes)
    if options.dynamic_size:
        raise RTDetrExportError("--split takes a fixed input size: graph 2 reads the memory at the level shapes of "
                                "one size; drop --dynamic-size")
    cells = sum((config.image_size[0] // s) * (config.image_size[1] // s) for s in config.level_strides)
    if cells < config.num_queries:
        raise RTDetrExportError(f"input {size_text(config.image_size)} has {cells} encoder cells, fewer than the "
                                f"model's {config.num_queries} queries: use a larger size")


def _finish(graph: onnx.ModelProto, options: GraphOptions, sampler: Sampler, which: str, log) -> ExportedGraph:
    simplifier = None
    if options.simplify:
        log(f"simplifying the {which} graph with onnxslim")
        graph, simplifier = simplify(graph)
    else:
        graph = with_static_output_dims(graph)
    census = check_split_graph(graph, sampler, which)
    return ExportedGraph(graph, census, export_record(options, simplifier), sampler)


def export_split_graphs(model: RTDETRv2, options: GraphOptions | None = None,
                        log=lambda message: None) -> SplitGraphs:
    """Trace, simplify and check both graphs of a deploy-fused copy of ``model``; nothing is written."""
    options = options or GraphOptions()
    validate_split(model, options)
    sampler = options.sampler_for(model.config.decoder_method)
    deployed = prepare_for_deploy(copy.deepcopy(model))
    deployed.set_sampler(sampler)
    # The split is for runtimes like ncnn, which hold at most 4 dimensions: its gridsample-bilinear decoder (the
    # sampler ncnn runs, having no Gather by index tensor) is written with no tensor above that, same numbers.
    deployed.set_rank4_layout(True)
    # Graph 2 holds no TopK: D-FINE's LQE takes its top bin probabilities with Max/Min instead, the same numbers
    # exactly (model/fdr.py top_values); RT-DETRv2 has no TopK after query selection.
    deployed.set_topk_free_heads(True)
    # Tracing at batch 2 keeps the exporter from specialising size-1 dimensions into the graph.
    batch = 2 if options.dynamic_batch else options.batch
    (images,) = example_inputs("raw", batch, model.config.image_size)
    batch_text = "dynamic" if options.dynamic_batch else options.batch
    log(f"exporting the split graphs with torch.onnx (opset {options.opset}, batch {batch_text}, {sampler}, input "
        f"{size_text(model.config.image_size)})")
    scoring = CellScoring(deployed).eval()
    encoder = trace_to_onnx(scoring, (images,), ["images"], CELL_OUTPUTS, options.opset, options.dynamic_batch)
    with torch.no_grad():
        cells = {name: out.numpy() for name, out in zip(CELL_OUTPUTS, scoring(images))}
    queries = select_queries(cells, model.config.num_queries)
    inputs = tuple(torch.from_numpy(queries[name]) for name in QUERY_INPUTS)
    decoder = trace_to_onnx(QueryDecoding(deployed).eval(), inputs, QUERY_INPUTS, DECODER_OUTPUTS, options.opset,
                            options.dynamic_batch)
    _name_memory_dims(encoder, model.config)
    return SplitGraphs(_finish(encoder, options, sampler, "encoder", log),
                       _finish(decoder, options, sampler, "decoder", log))


def _name_memory_dims(graph: onnx.ModelProto, config: ModelConfig) -> None:
    """Give graph 1's ``memory`` output its cell and channel counts: the exporter leaves the concatenated levels
    symbolic, and converters for edge runtimes (pnnx, RKNN) want static shapes where they are."""
    height, width = config.image_size
    cells = sum((height // s) * (width // s) for s in config.level_strides)
    for output in graph.graph.output:
        if output.name == "memory":
            dims = output.type.tensor_type.shape.dim
            for dim, value in zip(dims[1:], (cells, config.d_model)):
                dim.Clear()
                dim.dim_value = value

