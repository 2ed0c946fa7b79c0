"""``export_openvino``: an OpenVINO IR (MODEL.xml + MODEL.bin) from one of our verified ONNX files, optionally INT8
by NNCF, verified on OpenVINO CPU against PyTorch, written with its sidecar MODEL.xml.json, atomically.

The IR is made from an ONNX file of ours rather than from the model directly: the file already fixes the graph
options (sampler, batch, size range, head) and was proven against PyTorch, and the IR takes its contract as it
is, as a TensorRT engine built with ``trt --onnx`` does.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Callable

from rtdetr_export.artifact import (IrFiles, OnnxRecord, OnnxSource, OpenVinoRecord, OpenVinoRuntime, PrecisionRecipe,
                                    ir_weights_path, open_artifact, sidecar_path, write_sidecar)
from rtdetr_export.artifact.options import DEFAULT_CALIBRATION_COUNT
from rtdetr_export.artifact.records.openvino import IR_WEIGHTS
from rtdetr_export.backends.openvino_runner import PRECISION_HINTS
from rtdetr_export.errors import MissingDependencyError, RTDetrExportError
from rtdetr_export.files import atomic_outputs, check_output, file_sha256
from rtdetr_export.imaging import list_images
from rtdetr_export.model import RTDETRv2
from rtdetr_export.pipeline.verification import judged_ir_precision, recorded_or, reference_model, verify_ir
from rtdetr_export.precision.calibration import calibration_set
from rtdetr_export.precision.nncf_int8 import NNCF_RECIPES, quantize_nncf
from rtdetr_export.verify import Verification, VerificationInputs, VerificationPlan, choose_inputs

Log = Callable[[str], None]
IR_PRECISIONS = ("fp32", "int8")  # fp32: the ONNX file's precision as it is; int8: NNCF on an FP32 file


@dataclass
class OpenVinoExportOptions:
    """What ``rtdetr-export openvino`` exposes: the IR's precision (``int8``: NNCF with ``recipe``, calibrated on
    ``calib_images``/``calib_count`` as the INT8 ONNX path is), how its weights are stored (``weights``: fp16 as
    OpenVINO saves by default, or fp32), the CPU precision hint it is verified (and later run) under, and whether
    and on what images it is verified."""

    precision: str = "fp32"
    recipe: str = "rtdetr"
    calib_images: str | None = None
    calib_count: int = DEFAULT_CALIBRATION_COUNT
    weights: str = "fp16"
    hint: str = "f32"
    verify: bool = True
    images: str | None = None

    def validate(self) -> None:
        """Reject contradictory settings before any work is done."""
        for value, choices, what in ((self.precision, IR_PRECISIONS, "IR precision"),
                                     (self.recipe, NNCF_RECIPES, "NNCF recipe"), (self.weights, IR_WEIGHTS, "weights"),
                                     (self.hint, PRECISION_HINTS, "OpenVINO precision hint")):
            if value not in choices:
                raise RTDetrExportError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
        if self.calib_count < 1:
            raise RTDetrExportError(f"--calib-count must be at least 1, got {self.calib_count}")
        if self.precision != "int8" and (self.calib_images is not None or self.recipe != "rtdetr"):
            raise RTDetrExportError("--calib-images and --nncf-recipe apply to --precision int8 only")
        if self.calib_images is not None:
            list_images(self.calib_images)  # an empty or missing folder fails now, not after the conversion


@dataclass
class OpenVinoExportResult:
    """The written IR (.xml and .bin), its sidecar, and its record."""

    path: Path
    weights: Path
    sidecar: Path
    record: OpenVinoRecord

    @property
    def verification(self) -> Verification | None:
        return self.record.verification


def cpu_facts() -> tuple[str, bool]:
    """This CPU's name and whether OpenVINO computes bf16 on it natively (AVX-512 BF16 or AMX)."""
    import openvino as ov

    core = ov.Core()
    try:
        name = str(core.get_property("CPU", "FULL_DEVICE_NAME"))
    except RuntimeError:
        name = platform.processor()
    return name, "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def ir_op_census(model) -> dict[str, int]:
    """An IR's (``openvino.Model``'s) operation types and their counts, sorted by type."""
    return dict(sorted(Counter(op.get_type_name() for op in model.get_ordered_ops()).items()))


def _openvino():
    try:
        import openvino as ov
    except ImportError:
        raise MissingDependencyError("OpenVINO IR export needs openvino: pip install openvino") from None
    return ov


def _source_record(source: str | Path, options: OpenVinoExportOptions) -> OnnxRecord:
    record = open_artifact(source)
    if not isinstance(record, OnnxRecord):
        raise RTDetrExportError(f"{source} is not a single ONNX file of ours; `rtdetr-export openvino` converts the "
                                "ONNX file `rtdetr-export onnx` wrote (not a split artifact, an engine or an IR)")
    if options.precision == "int8" and record.precision != "fp32":
        raise RTDetrExportError(f"{source} is {record.precision} already; NNCF quantizes an FP32 ONNX file")
    return record


def _verification_inputs(options: OpenVinoExportOptions, source: OnnxRecord, judged: str,
                         log: Log) -> VerificationInputs:
    """What the IR is judged on (verify/inputs.py): --images; an INT8 IR the held-out part of its calibration
    folder; else what judged the ONNX file it came from."""
    if options.precision == "int8":
        return choose_inputs(options.images, options.calib_images, options.calib_count, precision="int8", log=log)
    if options.images is not None:
        return choose_inputs(options.images, log=log)
    return recorded_or(None, source, log) if source.verification else choose_inputs(precision=judged, log=log)


def export_openvino(source: str | Path, output: str | Path, options: OpenVinoExportOptions | None = None,
                    model: RTDETRv2 | None = None, model_path: str | Path | None = None, force: bool = False,
                    log: Log = lambda message: None) -> OpenVinoExportResult:
    """Convert ``source`` (an ONNX file ``rtdetr-export onnx`` wrote) to an OpenVINO IR at ``output`` (MODEL.xml;
    MODEL.bin and MODEL.xml.json beside it), INT8 by NNCF when asked, and (by default) verify it on OpenVINO CPU
    against the PyTorch reference (``model``, else rebuilt from the file's record or ``model_path``). Nothing is
    written unless every step passes."""
    options = options or OpenVinoExportOptions()
    options.validate()
    output = check_output(output, force, suffix=".xml")
    paths = [output, check_output(ir_weights_path(output), force), check_output(sidecar_path(output), force)]
    source = Path(source)
    record = _source_record(source, options)
    ov = _openvino()
    judged = judged_ir_precision(record.precision if options.precision == "fp32" else "int8", options.hint,
                                 options.weights)
    cpu, cpu_bf16 = cpu_facts()
    if options.hint == "bf16" and not cpu_bf16:
        log(f"note: this CPU ({cpu}) has no native bf16 (AVX-512 BF16 / AMX): OpenVINO runs the bf16 hint in f32 "
            "here, so this verification says nothing about bf16; the sidecar records it")
    log(f"converting {source.name} with OpenVINO {version('openvino')} (weights stored {options.weights})")
    converted = ov.convert_model(str(source))
    precision, recipe = record.precision, record.recipe
    if options.precision == "int8":
        if model is None and options.verify:  # a missing checkpoint fails now, not after minutes of NNCF
            model = reference_model(record, model_path, log)
        calibration = calibration_set(record.input_size, options.calib_count, options.calib_images)
        converted, details = quantize_nncf(converted, calibration.feeds(record.head), options.recipe, log)
        precision = "int8"
        recipe = PrecisionRecipe("int8", {"target": "openvino", **details,
                                          "calibration": {**calibration.to_json(), "method": "nncf"}})
    with tempfile.TemporaryDirectory(prefix=".rtdetr-export-ir-", dir=output.parent) as work:
        xml = Path(work) / output.name
        ov.save_model(converted, str(xml), compress_to_fp16=options.weights == "fp16")
        census = ir_op_census(ov.Core().read_model(str(xml)))  # as a reader of the file sees it (inspect)
        verification = None
        if options.verify:
            model = model or reference_model(record, model_path, log)
            plan = VerificationPlan.for_graph(record.graph_options(), model.config.image_size,
                                              _verification_inputs(options, record, judged, log))
            log(f"verifying the IR on OpenVINO CPU (hint {options.hint}) against PyTorch by {judged}'s limits "
                f"({plan.summary()})")
            verification = verify_ir(model, xml, record, plan, precision, options.hint, options.weights)
            if not verification.passed:
                raise RTDetrExportError("verification failed: " + "; ".join(verification.failures))
        else:
            log("verification skipped (--no-verify)")
        made = OpenVinoRecord.converted_from(
            record, precision=precision, recipe=recipe, verification=verification,
            ir=IrFiles(output.name, file_sha256(xml), paths[1].name, file_sha256(ir_weights_path(xml))),
            onnx=OnnxSource(source.name, file_sha256(source),
                            record.verification.passed if record.verification else None),
            runtime=OpenVinoRuntime(version("openvino"), options.weights, options.hint, cpu, cpu_bf16),
            op_census=census)
        log(f"writing {output.name}, {paths[1].name} and {paths[2].name}")
        with atomic_outputs(paths) as temps:
            os.replace(xml, temps[0])
            os.replace(ir_weights_path(xml), temps[1])
            write_sidecar(temps[2], made)
    return OpenVinoExportResult(output, paths[1], paths[2], made)
