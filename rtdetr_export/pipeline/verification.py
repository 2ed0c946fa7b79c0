"""Verify an artifact of ours later or elsewhere: rebuild its PyTorch reference from its record (or the checkpoint
the user names), then compare on ONNX Runtime or OpenVINO. ``reference_model`` is the one place that turns a
record into the model it must match (verify, the engine job, debug-precision, eval, predict and bench use it)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rtdetr_export.artifact import (ArtifactRecord, OnnxRecord, OpenVinoRecord, SplitRecord, open_artifact,
                                    split_sidecar)
from rtdetr_export.backends.openvino_runner import OpenVinoRunner
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model import RTDETRv2
from rtdetr_export.verify import (Verification, VerificationInputs, VerificationPlan, choose_inputs, thresholds_for,
                                  verify_candidate, verify_onnx, verify_split_graphs)
from rtdetr_export.weights import load_model
from rtdetr_export.weights.random_init import seeded_model


def reference_model(record: ArtifactRecord, model_path: str | Path | None = None,
                    log: Callable[[str], None] = lambda message: None) -> RTDETRv2:
    """The PyTorch reference an artifact must match: ``model_path`` if given, else what the record names."""
    config, source = record.model.config, record.model.source
    if model_path is not None:
        model = load_model(model_path, method=config.decoder_method, image_size=config.image_size)
        if source.sha256 and model.source.sha256 != source.sha256:
            log(f"warning: {model_path} is not the checkpoint this artifact was exported from "
                f"({source.file}, sha256 {source.sha256[:12]}...)")
        return model
    if source.format == "random":
        return seeded_model(config, source.seed or 0)
    if source.hub is not None:  # the pinned commit resolves to the very files again (from the cache when offline)
        log(f"loading the reference from the Hub model {source.hub.pinned_id}")
        return load_model(source.hub.pinned_id, method=config.decoder_method, image_size=config.image_size)
    what = source.file or "weights held in memory"
    raise RTDetrExportError(f"this artifact was exported from {what}; pass that checkpoint with --model to verify it")


def recorded_or(images: str | Path | None, record: ArtifactRecord,
                log: Callable[[str], None] = lambda message: None) -> VerificationInputs:
    """What a made artifact is judged on again: ``images`` if given, else the inputs its record says judged it when
    it was made, while their folder is there (verify/inputs.py)."""
    return choose_inputs(images, recorded=record.verification.inputs if record.verification else None,
                         precision=record.precision, log=log)


def verify_artifact(onnx_path: str | Path, model_path: str | Path | None = None,
                    images: str | Path | None = None,
                    log: Callable[[str], None] = lambda message: None,
                    openvino: str | None = None) -> Verification:
    """Verify one of our ONNX files on ONNX Runtime (or OpenVINO under the hint ``openvino``), a split artifact
    likewise, or an OpenVINO IR on OpenVINO (under ``openvino``, else the hint it was verified with), against its
    PyTorch reference, with the graph options, sampler and size range it was exported with."""
    record = open_artifact(onnx_path)
    if isinstance(record, SplitRecord):
        return verify_split(onnx_path, record, model_path, images, log, openvino)
    if isinstance(record, OpenVinoRecord):
        return verify_openvino(onnx_path, record, model_path, images, log, openvino)
    if not isinstance(record, OnnxRecord):
        raise RTDetrExportError(f"{onnx_path} is a TensorRT engine: `rtdetr-export verify` takes ONNX files (an "
                                "engine is verified when `rtdetr-export trt` builds it)")
    model = reference_model(record, model_path, log)
    plan = VerificationPlan.for_graph(record.graph_options(), model.config.image_size,
                                      recorded_or(images, record, log))
    runtime = f"OpenVINO CPU, precision hint {openvino}" if openvino else "ONNX Runtime CPU"
    log(f"verifying {onnx_path} ({record.head} head, {record.precision}, {record.sampler}) on {runtime} at "
        f"{plan.summary()}")
    verification = verify_onnx(model, onnx_path, plan, record.precision, openvino=openvino)
    verification.artifact = str(onnx_path)
    return verification


def verify_split(path: str | Path, record: SplitRecord, model_path: str | Path | None = None,
                 images: str | Path | None = None, log: Callable[[str], None] = lambda message: None,
                 openvino: str | None = None) -> Verification:
    """Verify a split artifact (``path``: its sidecar or either graph): graph 1 -> host step -> graph 2 on ONNX
    Runtime (or OpenVINO under the hint ``openvino``) against its PyTorch reference, by the plan and at the
    precision its export was verified with."""
    folder = split_sidecar(path).parent
    model = reference_model(record, model_path, log)
    plan = VerificationPlan.for_graph(record.graph_options(), model.config.image_size,
                                      recorded_or(images, record, log))
    runtime = f"OpenVINO CPU, precision hint {openvino}" if openvino else "ONNX Runtime CPU"
    log(f"verifying the split artifact {record.encoder.file} -> host step v{record.host_step} -> "
        f"{record.decoder.file} ({record.head} head, {record.precision}, {record.sampler}) on {runtime} at "
        f"{plan.summary()}")
    verification = verify_split_graphs(model, folder / record.encoder.file, folder / record.decoder.file, plan,
                                       record.precision, openvino)
    verification.artifact = str(path)
    return verification


def judged_ir_precision(precision: str, hint: str, weights: str) -> str:
    """The precision whose limits judge an IR: INT8 (or an FP16 source) by its own; an FP32 IR under the bf16 hint
    as bf16; FP32 with fp16-stored weights as FP16 (the weights are rounded to FP16: 1e-3 on the logits, measured,
    beyond the FP32 tensor limits); else FP32's tensor limits."""
    if precision != "fp32":
        return precision
    if hint == "bf16":
        return "bf16"
    return "fp16" if weights == "fp16" else "fp32"


def verify_ir(model: RTDETRv2, xml: Path, record: OnnxRecord | OpenVinoRecord, plan: VerificationPlan,
              precision: str, hint: str, weights: str) -> Verification:
    """The one verification loop for an IR: OpenVINO CPU under ``hint`` against the PyTorch reference, judged by
    ``judged_ir_precision``'s limits."""
    runner = OpenVinoRunner(xml, hint, io_names=(record.io.input_names, record.io.output_names))
    judged = judged_ir_precision(precision, hint, weights)
    return verify_candidate(model, runner, plan, precision, thresholds_for(judged), name=f"openvino-ir-cpu-{hint}")


def verify_openvino(path: str | Path, record: OpenVinoRecord, model_path: str | Path | None = None,
                    images: str | Path | None = None, log: Callable[[str], None] = lambda message: None,
                    openvino: str | None = None) -> Verification:
    """Verify an OpenVINO IR (``path``: its .xml) on OpenVINO CPU under ``openvino`` (else the hint it was verified
    with when made) against its PyTorch reference, by the plan and limits its export was verified with."""
    hint = openvino or record.inference_hint
    model = reference_model(record, model_path, log)
    plan = VerificationPlan.for_graph(record.graph_options(), model.config.image_size,
                                      recorded_or(images, record, log))
    weights = record.runtime.weights if record.runtime else "fp16"
    log(f"verifying the OpenVINO IR {path} ({record.head} head, {record.precision}, weights {weights}, "
        f"{record.sampler}) on OpenVINO CPU, precision hint {hint}, at {plan.summary()}")
    verification = verify_ir(model, Path(path), record, plan, record.precision, hint, weights)
    verification.artifact = str(path)
    return verification
