"""``export_onnx``: the whole ONNX job. Trace and check the graph (export/), convert its precision (precision/),
verify the file on ONNX Runtime against PyTorch (verify/), then write it with its provenance, atomically.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import onnx

from rtdetr_export.artifact import ONNX_FORMAT, embed_metadata, io_description, provenance_header, sidecar_path
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export.graph_checks import check_graph
from rtdetr_export.export.torch_export import GraphOptions, export_graph, sampler
from rtdetr_export.files import atomic_output, check_output, write_text_atomic
from rtdetr_export.model import RTDETRv2, SizeRange
from rtdetr_export.model.config import size_text
from rtdetr_export.precision import PrecisionOptions, apply_precision
from rtdetr_export.verify import Verification, verify_onnx

Log = Callable[[str], None]


@dataclass
class OnnxExportOptions(GraphOptions):
    """What ``rtdetr-export onnx`` exposes as flags: how the graph is traced (GraphOptions), then whether it is
    verified and on what images, and its precision."""

    verify: bool = True
    images: str | None = None
    precision: PrecisionOptions = field(default_factory=PrecisionOptions)

    @property
    def verification_batches(self) -> list[int]:
        """A dynamic batch is proven at 1 and 4; a static one at its size."""
        return [1, 4] if self.dynamic_batch else [self.batch]

    def validate_for(self, model: RTDETRv2) -> None:
        """Reject values no export of ``model`` can use, before any work is done."""
        config = model.config
        self.validate(config.decoder_method, config.num_queries, config.num_classes)
        self.precision.validate()


@dataclass
class ExportResult:
    """The written file, its sidecar, and the provenance recorded in both."""

    path: Path
    sidecar: Path
    provenance: dict[str, Any]

    @property
    def verification(self) -> Verification | None:
        record = self.provenance.get("verification")
        return Verification.from_json(record) if record else None


def model_record(model: RTDETRv2) -> dict[str, Any]:
    """The provenance's ``model`` field: where the weights came from and the full architecture (its
    ``config.version`` says RT-DETR v1 or v2). ``source.hub`` (repo id, commit, what was asked for) appears only
    for weights resolved from a Hub model id."""
    source = dataclasses.asdict(model.source)
    path = source.pop("path")
    source["file"] = Path(path).name if path else None
    if source["hub"] is None:
        del source["hub"]
    return {"source": source, "config": model.config.to_dict()}


def build_provenance(model: RTDETRv2, export: dict[str, Any], precision: str, io: dict[str, Any],
                     op_census: dict[str, int], verification: Verification | None,
                     recipe: dict[str, Any] | None = None, size_range: SizeRange | None = None) -> dict[str, Any]:
    """Everything a user needs to trust and reproduce an ONNX file. ``sampler`` says how the graph reads the
    sampling points (``method`` says what it computes; ``default`` may be written with GridSample or gathers).
    ``input_size`` is the size the file runs at by default: its fixed size, or a dynamic-size file's opt, whose
    ``input_size_range`` says what else it takes (null: fixed)."""
    config = model.config
    record = {**provenance_header(ONNX_FORMAT), "model": model_record(model), "method": config.decoder_method,
              "sampler": sampler(config.decoder_method, export.get("bilinear_op") or "gridsample"),
              "input_size": list(config.image_size),
              "input_size_range": size_range.to_json() if size_range else None,
              "classes": config.class_names, "precision": precision,
              "export": export, "io": io, "op_census": op_census,
              "verification": verification.to_json() if verification else None}
    if recipe:
        record["precision_recipe"] = recipe
    return record


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
        census = check_graph(graph, model.config.decoder_method, options.bilinear_op)

    with atomic_output(output) as tmp:
        onnx.save(graph, str(tmp))
        verification = None
        if options.verify:
            batches = options.verification_batches
            sizes = "" if options.size_range is None else ", input " + ", ".join(dict.fromkeys(
                size_text(s) for s in (options.size_range.opt, options.size_range.min, options.size_range.max)))
            stage(f"verifying on ONNX Runtime against PyTorch (batch {', '.join(map(str, batches))}{sizes})")
            verification = verify_onnx(model, tmp, options.head, batches, options.top_k, options.images,
                                       precision=precision, size_range=options.size_range)
            if not verification.passed:
                raise RTDetrExportError("verification failed: " + "; ".join(verification.failures))
        else:
            stage("verification skipped (--no-verify)")
        provenance = build_provenance(model, exported.export, precision, io_description(graph), census,
                                      verification, recipe, options.size_range)
        stage(f"writing {output} and {sidecar.name}")
        embed_metadata(graph, provenance)
        onnx.save(graph, str(tmp))
    write_text_atomic(sidecar, json.dumps(provenance, indent=2) + "\n")
    return ExportResult(output, sidecar, provenance)
