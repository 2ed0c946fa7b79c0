"""PyTorch -> ONNX, then simplify, check, verify, and write the file with its provenance atomically."""

from __future__ import annotations

import copy
import io
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import onnx
import torch

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export.graph_checks import check_graph
from rtdetr_export.export.heads import HEADS, INPUTS, OUTPUTS, wrap
from rtdetr_export.export.provenance import build_provenance, embed_metadata, sidecar_path
from rtdetr_export.files import atomic_output, check_output, write_text_atomic
from rtdetr_export.model import prepare_for_deploy
from rtdetr_export.precision import PrecisionOptions

DEFAULT_OPSET = 17
MAX_OPSET = 20
MIN_OPSET = {"default": 16, "discrete": 13}  # GridSample entered ONNX in opset 16


@dataclass
class OnnxExportOptions:
    """What ``rtdetr-export onnx`` exposes as flags."""

    opset: int = DEFAULT_OPSET
    batch: int = 1
    dynamic_batch: bool = False
    head: str = "raw"
    top_k: int = 300
    simplify: bool = True
    verify: bool = True
    images: str | None = None
    precision: PrecisionOptions = field(default_factory=PrecisionOptions)

    def validate(self, method: str, num_queries: int, num_classes: int) -> None:
        if self.head not in HEADS:
            raise RTDetrExportError(f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        low = MIN_OPSET[method]
        if not low <= self.opset <= MAX_OPSET:
            why = " (GridSample needs opset 16; use --method discrete for older runtimes)" if method == "default" \
                else ""
            raise RTDetrExportError(f"opset {self.opset} is not supported with --method {method}: "
                                    f"use {low}..{MAX_OPSET}{why}")
        if self.batch < 1:
            raise RTDetrExportError(f"batch must be at least 1, got {self.batch}")
        if self.head == "detections" and not 1 <= self.top_k <= num_queries * num_classes:
            raise RTDetrExportError(f"top-k must be in 1..{num_queries * num_classes}, got {self.top_k}")
        self.precision.validate()


@dataclass
class ExportResult:
    path: Path
    sidecar: Path
    provenance: dict[str, Any]


def _dummy_inputs(head: str, batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    images = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0))
    if head == "raw":
        return (images,)
    return images, torch.tensor([[size[1], size[0]]] * batch, dtype=torch.int64)


def torch_to_onnx(model: torch.nn.Module, head: str, options: OnnxExportOptions) -> onnx.ModelProto:
    """Trace the deploy-fused model with the TorchScript exporter (fast, and exact for dynamic batch)."""
    module = wrap(prepare_for_deploy(copy.deepcopy(model)), head, options.top_k).eval()
    # Tracing at batch 2 keeps the exporter from specialising size-1 dimensions into the graph.
    trace_batch = 2 if options.dynamic_batch else options.batch
    inputs = _dummy_inputs(head, trace_batch, model.config.image_size)
    names_in, names_out = INPUTS[head], OUTPUTS[head]
    dynamic = {name: {0: "batch"} for name in names_in + names_out} if options.dynamic_batch else None
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, buffer, input_names=names_in, output_names=names_out,
                          opset_version=options.opset, dynamic_axes=dynamic, do_constant_folding=True,
                          dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


def simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """Constant-fold and clean the graph with onnxslim; returns (model, "onnxslim <version>")."""
    import onnxslim
    from importlib.metadata import version

    return onnxslim.slim(model), f"onnxslim {version('onnxslim')}"


def io_description(model: onnx.ModelProto) -> dict[str, list[dict[str, Any]]]:
    """Names, shapes (ints or symbolic names) and element types of the graph inputs and outputs."""
    def describe(values) -> list[dict[str, Any]]:
        out = []
        for value in values:
            tensor = value.type.tensor_type
            shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
            out.append({"name": value.name, "shape": shape,
                        "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name})
        return out
    initializers = {i.name for i in model.graph.initializer}
    return {"inputs": describe([i for i in model.graph.input if i.name not in initializers]),
            "outputs": describe(model.graph.output)}


def export_onnx(model: torch.nn.Module, output: str | Path, options: OnnxExportOptions | None = None,
                force: bool = False, log: Callable[[str], None] = lambda message: None) -> ExportResult:
    """Export, simplify, check and (by default) verify ``model``; writes OUTPUT.onnx and OUTPUT.json.

    Nothing is written unless every step passes; a failed verification raises RTDetrExportError naming the
    output that failed and by how much.
    """
    options = options or OnnxExportOptions()
    config = model.config
    options.validate(config.decoder_method, config.num_queries, config.num_classes)
    output = check_output(output, force, suffix=".onnx")
    sidecar = check_output(sidecar_path(output), force)

    batch_text = "dynamic" if options.dynamic_batch else str(options.batch)
    precision = options.precision.target
    stages = ["export", "simplify", "check", *(["precision"] if precision != "fp32" else []), "verify", "write"]
    step = lambda stage: f"[{stages.index(stage) + 1}/{len(stages)}]"  # noqa: E731
    log(f"{step('export')} exporting {options.head} head with torch.onnx (opset {options.opset}, "
        f"batch {batch_text}, method {config.decoder_method}, input {config.image_size[0]}x{config.image_size[1]})")
    graph = torch_to_onnx(model, options.head, options)
    simplifier = None
    if options.simplify:
        log(f"{step('simplify')} simplifying with onnxslim")
        graph, simplifier = simplify(graph)
    else:
        log(f"{step('simplify')} simplification skipped (--no-simplify)")
    log(f"{step('check')} checking the graph (onnx.checker, op census, forbidden ops, finite constants)")
    census = check_graph(graph, config.decoder_method)
    recipe = None
    if precision != "fp32":
        from rtdetr_export.precision import apply_precision

        log(f"{step('precision')} converting to {precision} on the graph, then checking it again")
        converted = apply_precision(graph, options.head, config.image_size, options.precision, log)
        graph, recipe = converted.model, converted.recipe
        census = check_graph(graph, config.decoder_method)

    export_info = {"opset": options.opset, "head": options.head, "top_k": options.top_k if options.head ==
                   "detections" else None, "batch": None if options.dynamic_batch else options.batch,
                   "dynamic_batch": options.dynamic_batch, "simplifier": simplifier, "exporter": "torch.onnx"}
    with atomic_output(output) as tmp:
        onnx.save(graph, str(tmp))
        verification = None
        if options.verify:
            from rtdetr_export.verify import verify_onnx

            batches = [1, 4] if options.dynamic_batch else [options.batch]
            log(f"{step('verify')} verifying on ONNX Runtime against PyTorch "
                f"(batch {', '.join(map(str, batches))})")
            verification = verify_onnx(model, tmp, options.head, batches, options.top_k, options.images,
                                       precision=precision)
            if not verification["passed"]:
                raise RTDetrExportError("verification failed: " + "; ".join(verification["failures"]))
        else:
            log(f"{step('verify')} verification skipped (--no-verify)")
        provenance = build_provenance(model, export_info, precision, io_description(graph), census, verification)
        if recipe is not None:
            provenance["precision_recipe"] = recipe
        log(f"{step('write')} writing {output} and {sidecar.name}")
        embed_metadata(graph, provenance)
        onnx.save(graph, str(tmp))
    write_text_atomic(sidecar, json.dumps(provenance, indent=2) + "\n")
    return ExportResult(output, sidecar, provenance)


__all__ = ["ExportResult", "OnnxExportOptions", "export_onnx", "asdict"]
