"""``export_split``: the split ONNX job (``rtdetr-export onnx --split``). Trace and check both graphs
(export/split_export.py), convert both to the precision asked for (precision/split.py), verify graph 1 -> host
step -> graph 2 on ONNX Runtime against PyTorch (FP32 by tensor limits, FP16/INT8 by detection agreement), then
write MODEL.encoder.onnx, MODEL.decoder.onnx and the sidecar MODEL.json together: all three or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx

from rtdetr_export.artifact import (SPLIT_FORMAT, Header, IODescription, ModelRecord, PrecisionRecipe, SourceRecord,
                                    SplitGraph, SplitPart, SplitRecord, TensorSpec, embed_split_part, io_description,
                                    split_paths, write_sidecar)
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export.split_export import SplitGraphs, check_split_graph, export_split_graphs
from rtdetr_export.export.torch_export import ExportedGraph
from rtdetr_export.files import atomic_outputs, check_output, file_sha256
from rtdetr_export.imaging.host_step import HOST_STEP_VERSION
from rtdetr_export.model import RTDETRv2
from rtdetr_export.model.heads import INPUTS, OUTPUTS
from rtdetr_export.pipeline.onnx import OnnxExportOptions
from rtdetr_export.precision.split import split_precision
from rtdetr_export.verify import Verification, VerificationPlan, verify_split_graphs

Log = Callable[[str], None]


@dataclass
class SplitExportResult:
    """The two graphs written, their sidecar, and its record."""

    encoder: Path
    decoder: Path
    sidecar: Path
    record: SplitRecord

    @property
    def verification(self) -> Verification | None:
        return self.record.verification


def contract_io(head: str, images: TensorSpec, num_queries: int, num_classes: int, top_k: int) -> IODescription:
    """The whole model's inputs and outputs, as the single-file artifact of the same head has them (the split's
    runner takes and returns exactly these)."""
    batch = images.shape[0] if images.shape else "batch"
    rows = num_queries if head == "raw" else top_k
    shapes = {"orig_target_sizes": ((batch, 2), "int64"), "logits": ((batch, rows, num_classes), "float32"),
              "pred_boxes": ((batch, rows, 4), "float32"), "labels": ((batch, rows), "int64"),
              "boxes": ((batch, rows, 4), "float32"), "scores": ((batch, rows), "float32")}
    inputs = [images] + [TensorSpec(name, *shapes[name]) for name in INPUTS[head][1:]]
    return IODescription(tuple(inputs), tuple(TensorSpec(name, *shapes[name]) for name in OUTPUTS[head]))


def split_record(model: RTDETRv2, graphs: SplitGraphs, written: dict[str, tuple[Path, Path]],
                 options: OnnxExportOptions, verification: Verification | None,
                 recipes: dict[str, PrecisionRecipe] | None = None) -> SplitRecord:
    """The sidecar of a split artifact whose graphs, named ``written[part] = (final path, where it lies now)``,
    hold what ``graphs`` holds (``recipes``: how each graph's precision was made, none for FP32)."""
    config, recipes = model.config, recipes or {}
    parts = {name: SplitGraph(final.name, file_sha256(now), io_description(exported.graph), exported.op_census,
                              recipes.get(name))
             for (name, (final, now)), exported in zip(written.items(), (graphs.encoder, graphs.decoder))}
    io = contract_io(options.head, parts["encoder"].io["images"], config.num_queries, config.num_classes,
                     options.top_k)
    return SplitRecord(header=Header.now(SPLIT_FORMAT), model=ModelRecord(SourceRecord.of(model.source), config),
                       sampler=graphs.encoder.sampler, input_size=tuple(config.image_size), input_size_range=None,
                       classes=list(config.class_names), precision=options.precision.target,
                       export=graphs.encoder.export, io=io, verification=verification, **parts,
                       host_step=HOST_STEP_VERSION)


def export_split(model: RTDETRv2, output: str | Path, options: OnnxExportOptions | None = None,
                 force: bool = False, log: Log = lambda message: None) -> SplitExportResult:
    """Export ``model`` as a split artifact named after ``output`` (MODEL.onnx -> MODEL.encoder.onnx,
    MODEL.decoder.onnx, MODEL.json) and (by default) verify it. Nothing is written unless every step passes."""
    options = options or OnnxExportOptions()
    options.validate_for(model)
    check_output(output, True, suffix=".onnx")  # the name only: MODEL.onnx itself is not written
    encoder, decoder, sidecar = paths = [check_output(path, force) for path in split_paths(output)]
    graphs, recipes = _convert(model, export_split_graphs(model, options, log), options, log)
    with atomic_outputs(paths) as temps:
        for name, exported, tmp in zip(("encoder", "decoder"), (graphs.encoder, graphs.decoder), temps):
            embed_split_part(exported.graph, SplitPart(name, sidecar.name))
            onnx.save(exported.graph, str(tmp))
        verification = _verify(model, temps[0], temps[1], options, log)
        record = split_record(model, graphs, {"encoder": (encoder, temps[0]), "decoder": (decoder, temps[1])},
                              options, verification, recipes)
        log(f"writing {encoder.name}, {decoder.name} and {sidecar.name}")
        write_sidecar(temps[2], record)
    return SplitExportResult(encoder, decoder, sidecar, record)


def _convert(model: RTDETRv2, graphs: SplitGraphs, options: OnnxExportOptions,
             log: Log) -> tuple[SplitGraphs, dict[str, PrecisionRecipe]]:
    """Both graphs at ``options.precision`` (FP32: as they are), each checked again, with their recipes."""
    precision = options.precision.target
    if precision == "fp32":
        return graphs, {}
    log(f"converting both graphs to {precision}, then checking them again")
    converted = split_precision(graphs.encoder.graph, graphs.decoder.graph, tuple(model.config.image_size),
                                model.config.num_queries, options.precision, log)
    out = {}
    for name, exported in (("encoder", graphs.encoder), ("decoder", graphs.decoder)):
        graph = converted[name].model
        census = check_split_graph(graph, exported.sampler, name)
        out[name] = ExportedGraph(graph, census, exported.export, exported.sampler)
    recipes = {name: PrecisionRecipe(precision, result.recipe) for name, result in converted.items()}
    return SplitGraphs(out["encoder"], out["decoder"]), recipes


def _verify(model: RTDETRv2, encoder: Path, decoder: Path, options: OnnxExportOptions,
            log: Log) -> Verification | None:
    if not options.verify:
        log("verification skipped (--no-verify)")
        return None
    plan = VerificationPlan.for_graph(options, model.config.image_size, options.verification_inputs(log))
    precision = options.precision.target
    judged = "tensor limits" if precision == "fp32" else "detection agreement"
    log(f"verifying graph 1 -> host step -> graph 2 ({precision}) on ONNX Runtime against PyTorch by {judged} "
        f"({plan.summary()})")
    verification = verify_split_graphs(model, encoder, decoder, plan, precision)
    if not verification.passed:
        raise RTDetrExportError("verification failed: " + "; ".join(verification.failures))
    return verification
