"""``export_onnx``: the whole ONNX job. Trace and check the graph (export/), convert its precision (precision/),
verify the file on ONNX Runtime against PyTorch (verify/), then write it with its provenance, atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import onnx

from rtdetr_export.artifact import (ONNX_FORMAT, Header, ModelRecord, OnnxRecord, PrecisionOptions, PrecisionRecipe,
                                    SourceRecord, embed_metadata, io_description, sidecar_path, write_sidecar)
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export.graph_checks import check_graph
from rtdetr_export.export.torch_export import ExportedGraph, GraphOptions, export_graph
from rtdetr_export.files import atomic_output, check_output
from rtdetr_export.model import RTDETRv2
from rtdetr_export.precision import apply_precision
from rtdetr_export.verify import Verification, VerificationInputs, VerificationPlan, choose_inputs, verify_onnx

Log = Callable[[str], None]


@dataclass
class OnnxExportOptions(GraphOptions):
    """What ``rtdetr-export onnx`` exposes as flags: how the graph is traced (GraphOptions), then whether it is
    verified and on what images, and its precision."""

    verify: bool = True
    images: str | None = None
    precision: PrecisionOptions = field(default_factory=PrecisionOptions)

    def validate_for(self, model: RTDETRv2) -> None:
        """Reject values no export of ``model`` can use, before any work is done."""
        config = model.config
        self.validate(config.decoder_method, config.num_queries, config.num_classes)
        self.precision.validate()

    def verification_inputs(self, log: Log = lambda message: None) -> VerificationInputs:
        """What this export is verified on (verify/inputs.py): ``images``, else the held-out part of the
        calibration folder, else synthetic scenes (FP16/INT8: with a note)."""
        precision = self.precision
        return choose_inputs(self.images, precision.calib_images, precision.calib_count, precision=precision.target,
                             log=log)


@dataclass
class ExportResult:
    """The written file, its sidecar, and the record stored in both."""

    path: Path
    sidecar: Path
    record: OnnxRecord

    @property
    def verification(self) -> Verification | None:
        return self.record.verification


def onnx_record(model: RTDETRv2, exported: ExportedGraph, graph: onnx.ModelProto, census: dict[str, int],
                precision: str, recipe: dict | None, options: GraphOptions,
                verification: Verification | None) -> OnnxRecord:
    """Everything a user needs to trust and reproduce an ONNX file (artifact/records/ says what each field
    means). ``input_size`` is what the file runs at by default: its fixed size, or a dynamic-size file's opt."""
    config = model.config
    return OnnxRecord(header=Header.now(ONNX_FORMAT), model=ModelRecord(SourceRecord.of(model.source), config),
                      sampler=exported.sampler, input_size=tuple(config.image_size),
                      input_size_range=options.size_range, classes=list(config.class_names), precision=precision,
                      export=exported.export, io=io_description(graph), verification=verification,
                      recipe=PrecisionRecipe(precision, recipe) if recipe else None, op_census=census)


class _Stages:
    """Numbers progress lines "[i/n]" in the order the stages run."""

    def __init__(self, count: int, log: Log):
        self.count, self.done, self.log = count, 0, log

    def __call__(self, message: str) -> None:
        self.done += 1
        self.log(f"[{self.done}/{self.count}] {message}")


def export_onnx(model: RTDETRv2, output: str | Path, options: OnnxExportOptions | None = None,
                force: bool = False, log: Log = lambda message: None) -> ExportResult:
    """Export, simplify, check, convert precision and (by default) verify ``model``; writes OUTPUT.onnx and
    its sidecar OUTPUT.json. Nothing is written unless every step passes; a failed verification raises
    RTDetrExportError naming the output that failed and by how much.
    """
    options = options or OnnxExportOptions()
    options.validate_for(model)
    output = check_output(output, force, suffix=".onnx")
    sidecar = check_output(sidecar_path(output), force)
    precision = options.precision.target
    stage = _Stages(5 + (precision != "fp32"), log)

    exported = export_graph(model, options, stage)
    graph, census, recipe = exported.graph, exported.op_census, None
    if precision != "fp32":
        stage(f"converting to {precision} on the graph, then checking it again")
        converted = apply_precision(graph, options.head, model.config.image_size, options.precision, log)
        graph, recipe = converted.model, converted.recipe
        census = check_graph(graph, exported.sampler)

    with atomic_output(output) as tmp:
        onnx.save(graph, str(tmp))
        verification = None
        if options.verify:
            plan = VerificationPlan.for_graph(options, model.config.image_size, options.verification_inputs(log))
            stage(f"verifying on ONNX Runtime against PyTorch ({plan.summary()})")
            verification = verify_onnx(model, tmp, plan, precision)
            if not verification.passed:
                raise RTDetrExportError("verification failed: " + "; ".join(verification.failures))
        else:
            stage("verification skipped (--no-verify)")
        record = onnx_record(model, exported, graph, census, precision, recipe, options, verification)
        stage(f"writing {output} and {sidecar.name}")
        embed_metadata(graph, record)
        onnx.save(graph, str(tmp))
    write_sidecar(sidecar, record)
    return ExportResult(output, sidecar, record)
