"""Verify an existing artifact of ours: rebuild its reference model from the provenance, then compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export.provenance import load_artifact_provenance
from rtdetr_export.model import ModelConfig, RTDETRv2
from rtdetr_export.weights import WeightSource, load_model
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
        model = randomize_(RTDETRv2(config), source.get("seed") or 0)
        model.source = WeightSource("random", seed=source.get("seed"))
        return model
    raise RTDetrExportError(f"this artifact was exported from {source.get('file')}; pass that checkpoint "
                            "with --model to verify it")


def verify_artifact(onnx_path: str | Path, model_path: str | Path | None = None,
                    images: str | Path | None = None, log: Callable[[str], None] = lambda message: None) -> dict:
    """Verify one of our ONNX files on ONNX Runtime against its PyTorch reference; JSON-ready report."""
    from rtdetr_export.verify.verification import verify_onnx

    provenance = load_artifact_provenance(onnx_path)
    export = provenance["export"]
    model = reference_model(provenance, model_path, log)
    batches = [1, 4] if export.get("dynamic_batch") else [export.get("batch") or 1]
    log(f"verifying {onnx_path} ({export['head']} head, {provenance['precision']}) at batch "
        f"{', '.join(map(str, batches))}")
    report = verify_onnx(model, onnx_path, export["head"], batches, export.get("top_k") or 300, images,
                         precision=provenance["precision"])
    report["artifact"] = str(onnx_path)
    return report
