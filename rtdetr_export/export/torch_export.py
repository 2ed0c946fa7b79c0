"""PyTorch -> ONNX graph: trace a head with torch.onnx, simplify with onnxslim, check the graph.

This layer makes graphs in memory; writing, precision and verification are composed by
``rtdetr_export.pipeline.onnx`` above it.
"""

from __future__ import annotations

import copy
import io
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import onnx
import torch

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export.graph_checks import check_graph
from rtdetr_export.model import RTDETRv2, SizeRange, prepare_for_deploy
from rtdetr_export.model.config import size_text
from rtdetr_export.model.deformable_attention import BILINEAR_OPS
from rtdetr_export.model.heads import HEADS, INPUTS, OUTPUTS, wrap

DEFAULT_OPSET = 17
MAX_OPSET = 20
GRIDSAMPLE_OPSET = 16  # GridSample entered ONNX in opset 16; every other op of ours is in opset 13
MIN_OPSET = 13
# How ``default`` sampling is written when nobody says: see docs/model.md ("Reading the sampling points") for the
# measurement behind the choice.
DEFAULT_BILINEAR_OP = "gather"


def sampler(method: str, bilinear_op: str) -> str:
    """What the graph reads sampling points with: "gridsample-bilinear", "gather-bilinear" or "gather-nearest"."""
    return "gather-nearest" if method == "discrete" else f"{bilinear_op}-bilinear"


def min_opset(method: str, bilinear_op: str) -> int:
    return GRIDSAMPLE_OPSET if sampler(method, bilinear_op) == "gridsample-bilinear" else MIN_OPSET


@dataclass
class GraphOptions:
    """How the graph is traced: opset, batch (static or dynamic), input size (static, or dynamic over
    ``size_range``), head, top-k, simplification."""

    opset: int = DEFAULT_OPSET
    batch: int = 1
    dynamic_batch: bool = False
    head: str = "raw"
    top_k: int = 300
    simplify: bool = True
    bilinear_op: str = DEFAULT_BILINEAR_OP  # how ``default`` sampling is written: "gather" or "gridsample"
    # None: the input size is fixed (the model's image_size). A range: height and width are graph dimensions and
    # the model must be built at ``size_range.opt``.
    size_range: SizeRange | None = None

    @property
    def dynamic_size(self) -> bool:
        return self.size_range is not None

    def validate(self, method: str, num_queries: int, num_classes: int) -> None:
        """Reject values no export can use, before any work is done."""
        if self.head not in HEADS:
            raise RTDetrExportError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        if self.bilinear_op not in BILINEAR_OPS:
            raise RTDetrExportError(f"unknown bilinear op {self.bilinear_op!r}; choose one of "
                                    f"{', '.join(BILINEAR_OPS)}")
        low = min_opset(method, self.bilinear_op)
        if not low <= self.opset <= MAX_OPSET:
            why = " (GridSample needs opset 16; use --bilinear-op gather for older runtimes)" \
                if low == GRIDSAMPLE_OPSET else ""
            raise RTDetrExportError(f"opset {self.opset} is not supported with --method {method}: "
                                    f"use {low}..{MAX_OPSET}{why}")
        if self.batch < 1:
            raise RTDetrExportError(f"batch must be at least 1, got {self.batch}")
        if self.head == "detections" and not 1 <= self.top_k <= num_queries * num_classes:
            raise RTDetrExportError(f"top-k must be in 1..{num_queries * num_classes}, got {self.top_k}")

    def record(self, simplifier: str | None, method: str) -> dict[str, Any]:
        """The provenance's ``export`` field (``bilinear_op`` None for ``discrete``, which never reads bilinearly)."""
        return {"opset": self.opset, "head": self.head,
                "bilinear_op": self.bilinear_op if method == "default" else None, "top_k": self.top_k if self.head == "detections" else None,
                "batch": None if self.dynamic_batch else self.batch, "dynamic_batch": self.dynamic_batch,
                "dynamic_size": self.dynamic_size, "simplifier": simplifier, "exporter": "torch.onnx"}


@dataclass
class ExportedGraph:
    """A checked graph and the facts the provenance records about how it was made."""

    graph: onnx.ModelProto
    op_census: dict[str, int]
    export: dict[str, Any]


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
    Also the peer path's export (bench/peer.py), so both sides of that comparison are traced alike.
    """
    dynamic = dynamic_axes(input_names, output_names, dynamic_batch, dynamic_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, buffer, input_names=input_names, output_names=output_names,
                          opset_version=opset, dynamic_axes=dynamic, do_constant_folding=True, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


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
    """Trace a deploy-fused copy of ``model`` under ``options.head``."""
    deployed = prepare_for_deploy(copy.deepcopy(model))
    deployed.set_bilinear_op(options.bilinear_op)
    if options.dynamic_size:
        deployed.compute_sizes_in_graph()
    module = wrap(deployed, options.head, options.top_k).eval()
    # Tracing at batch 2 keeps the exporter from specialising size-1 dimensions into the graph.
    trace_batch = 2 if options.dynamic_batch else options.batch
    inputs = example_inputs(options.head, trace_batch, model.config.image_size)
    return trace_to_onnx(module, inputs, INPUTS[options.head], OUTPUTS[options.head], options.opset,
                         options.dynamic_batch, options.dynamic_size)


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
    log(f"exporting {options.head} head with torch.onnx (opset {options.opset}, batch {batch}, method "
        f"{config.decoder_method} as {sampler(config.decoder_method, options.bilinear_op)}, input "
        f"{input_text(config.image_size, options.size_range)})")
    graph = torch_to_onnx(model, options)
    simplifier = None
    if options.simplify:
        log("simplifying with onnxslim")
        graph, simplifier = simplify(graph, options.dynamic_size)
    else:
        log("simplification skipped (--no-simplify)")
    log("checking the graph (onnx.checker, op census, forbidden ops, finite constants)")
    census = check_graph(graph, config.decoder_method, options.bilinear_op)
    return ExportedGraph(graph, census, options.record(simplifier, config.decoder_method))
