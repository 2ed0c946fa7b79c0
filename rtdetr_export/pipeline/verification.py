"""Verify an artifact file of ours later or elsewhere: rebuild its PyTorch reference from the provenance (or the
checkpoint the user names), then compare on ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rtdetr_export.artifact import input_size_range, read_provenance
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model import ModelConfig, RTDETRv2, WeightSource
from rtdetr_export.verify import Verification, verify_onnx
from rtdetr_export.weights import load_model
from rtdetr_export.weights.random_init import randomize_


def reference_model(provenance: dict[str, Any], model_path: str | Path | None = None,
                    log: Callable[[str], None] = lambda message: None) -> RTDETRv2:
    """The PyTorch reference an artifact must match: ``model_path`` if given, else what the provenance names."""
    config = ModelConfig.from_dict(provenance["model"]["config"])
    source = provenance["model"]["source"]
    if model_path is not None:
        model = load_model(model_path, method=config.decoder_method, image_size=config.image_size)
        if source.get("sha256") and model.source.sha256 != source["sha256"]:
            log(f"warning: {model_path} is not the checkpoint this artifact was exported from "
                f"({source.get('file')}, sha256 {source['sha256'][:12]}...)")
        return model
    if source.get("format") == "random":
        seed = source.get("seed") or 0
        return randomize_(RTDETRv2(config, WeightSource("random", seed=seed)), seed)
    if source.get("hub"):  # the pinned commit resolves to the very files again (from the cache when offline)
        hub = source["hub"]
        log(f"loading the reference from the Hub model {hub['repo_id']}@{hub['revision']}")
        return load_model(f"{hub['repo_id']}@{hub['revision']}", method=config.decoder_method,
                          image_size=config.image_size)
    what = source.get("file") or "weights held in memory"
    raise RTDetrExportError(f"this artifact was exported from {what}; pass that checkpoint with --model to verify it")


def verify_artifact(onnx_path: str | Path, model_path: str | Path | None = None,
                    images: str | Path | None = None,
                    log: Callable[[str], None] = lambda message: None,
                    openvino: str | None = None) -> Verification:
    """Verify one of our ONNX files on ONNX Runtime (or OpenVINO under the hint ``openvino``) against its
    PyTorch reference."""
    provenance = read_provenance(onnx_path)
    export = provenance["export"]
    model = reference_model(provenance, model_path, log)
    batches = [1, 4] if export.get("dynamic_batch") else [export.get("batch") or 1]
    runtime = f"OpenVINO CPU, precision hint {openvino}" if openvino else "ONNX Runtime CPU"
    log(f"verifying {onnx_path} ({export['head']} head, {provenance['precision']}) on {runtime} at batch "
        f"{', '.join(map(str, batches))}")
    verification = verify_onnx(model, onnx_path, export["head"], batches, export.get("top_k") or 300, images,
                               precision=provenance["precision"], openvino=openvino,
                               size_range=input_size_range(provenance))
    verification.artifact = str(onnx_path)
    return verification
