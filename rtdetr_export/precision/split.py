"""FP16 and INT8 for a split artifact: both graphs converted with the one set of precision options, each calibrated
on what it reads in deployment (graph 1 the images; graph 2 graph 1's FP32 outputs after the host step)."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import onnx

from rtdetr_export.artifact.options import PrecisionOptions
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.imaging.host_step import select_queries
from rtdetr_export.onnx_graph import matching_nodes
from rtdetr_export.precision import PrecisionResult, announce, convert_precision
from rtdetr_export.precision.calibration import calibration_set


def split_precision(encoder: onnx.ModelProto, decoder: onnx.ModelProto, size: tuple[int, int], num_queries: int,
                    options: PrecisionOptions,
                    log: Callable[[str], None] = lambda message: None) -> dict[str, PrecisionResult]:
    """Both FP32 graphs of a split converted to ``options.target``: {"encoder": ..., "decoder": ...}."""
    options.validate()
    graphs = {"encoder": encoder, "decoder": decoder}
    per_graph = graph_options(graphs, options)
    calibration = calibration_set(size, options.calib_count, options.calib_images)
    announce(calibration, options, log)
    images = calibration.feeds("raw")
    feeds = {"encoder": images, "decoder": [select_queries(cells, num_queries) for cells in _run(encoder, images)]}
    out = {}
    for name, graph in graphs.items():
        log(f"converting the {name} graph to {options.target}")
        out[name] = convert_precision(graph, calibration, feeds[name], per_graph[name], log)
    return out


def graph_options(graphs: dict[str, onnx.ModelProto], options: PrecisionOptions) -> dict[str, PrecisionOptions]:
    """Per graph, ``options`` with the node patterns (--int8-exclude, --keep-fp32) that name a node of it: a
    pattern names nodes of one graph or the other, and one that matches neither is refused as the single file's
    passes refuse it."""
    def named_in(graph: onnx.ModelProto, patterns: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(pattern for pattern in patterns if matching_nodes(graph, [pattern]))

    for flag, patterns in (("--int8-exclude", options.int8_exclude), ("--keep-fp32", options.keep_fp32)):
        for pattern in patterns:
            if not any(named_in(graph, (pattern,)) for graph in graphs.values()):
                raise RTDetrExportError(f"{flag} {pattern!r} matches no node of either split graph (patterns are "
                                        "shell-style, e.g. '*/dec_score_head*')")
    return {name: replace(options, int8_exclude=named_in(graph, options.int8_exclude),
                          keep_fp32=named_in(graph, options.keep_fp32)) for name, graph in graphs.items()}


def _run(graph: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """``graph``'s outputs, by name, for each feed (ONNX Runtime CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return [dict(zip(names, session.run(names, feed))) for feed in feeds]
