"""What a benchmark measures: the reference model, our ONNX export (made on the fly when no artifact is
given) and, with ``--peer``, the same weights exported by the transformers path."""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from rtdetr_export.bench.artifacts import ONNX_KINDS, OPENVINO_KINDS, Artifact, check_artifact
from rtdetr_export.bench.options import BenchOptions
from rtdetr_export.bench.targets import Target
from rtdetr_export.errors import MissingDependencyError, RTDetrExportError
from rtdetr_export.model.config import parse_image_size
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx, reference_model
from rtdetr_export.weights import load_model

Log = Callable[[str], None]


@dataclass
class BenchModels:
    """The reference model, the artifacts to run (given or exported here) and the peer, if any."""

    model: nn.Module
    artifacts: list[Artifact]
    exports: dict[str, Any] = field(default_factory=dict)
    peer_model: Any = None  # transformers' model, for the peer's PyTorch row
    peer_skipped: str | None = None

    def peer_targets(self, names: list[str], device: str, head: str) -> list[Target]:
        """The peer's PyTorch rows (its ONNX row is an ordinary artifact labelled 'peer')."""
        wanted = [(n, p) for n, p in (("torch", "fp32"), ("torch-fp16", "fp16")) if n in names]
        if self.peer_model is not None and head != "raw":
            self.peer_skipped = "the peer path has the raw head only (logits, pred_boxes)"
        if self.peer_skipped:
            return [Target(f"peer:{n}", n.split("-")[0], "-", device, "peer", skipped=self.peer_skipped)
                    for n in ["torch", "onnxruntime"] if any(x.startswith(n) for x in names)]
        if self.peer_model is None:
            return []
        from rtdetr_export.bench.peer import TransformersRunner

        targets = []
        for _name, precision in wanted:
            target = Target(f"torch-{precision}-{device}:peer", "torch", precision, device, "peer",
                            info={"model": f"transformers {type(self.peer_model).__name__} (eager)"})
            if precision == "fp16" and device != "cuda":
                target.skipped = "FP16 PyTorch is benchmarked on CUDA only"
            else:
                # Each precision casts its own copy: activating FP16 must not turn the FP32 row's model into half.
                model = self.peer_model if precision == "fp32" else copy.deepcopy(self.peer_model)
                target.make = lambda m=model, p=precision: TransformersRunner(m, device, p)
            targets.append(target)
        return targets

    def to_json(self) -> dict[str, Any]:
        config = self.model.config
        return {"source": dataclasses.asdict(self.model.source), "method": config.decoder_method,
                "input_size": list(config.image_size), "num_queries": config.num_queries,
                "num_classes": config.num_classes, "parameters": sum(p.numel() for p in self.model.parameters()),
                "config": config.to_dict(), "artifacts": [a.to_json() for a in self.artifacts],
                "exports": self.exports,
                "peer": self.peer_skipped or ("transformers" if self.peer_model is not None else None)}


def _load_reference(options: BenchOptions, artifacts: list[Artifact], log: Log) -> nn.Module:
    ours = [a for a in artifacts if a.record is not None]
    if ours and options.preset is None:
        return reference_model(ours[0].record, options.model_path, log)
    if artifacts and options.model_path is None and options.preset is None:
        raise RTDetrExportError("these artifacts carry no provenance to rebuild their reference from; "
                                "pass --model (or --preset for random weights)")
    preset = options.preset or ("r18vd" if options.model_path is None else None)
    model = load_model(options.model_path, preset=preset, method=options.method, image_size=options.image_size)
    if model.source.format == "random":
        log(f"[bench] no --model given: preset {options.preset or 'r18vd'} with seeded random weights "
            f"(seed {model.source.seed})")
    return model


def _peer_source(options: BenchOptions, artifacts: list[Artifact], tmp: Path, log: Log):
    """(transformers model, our model from the same folder) or raise with the reason there is no peer."""
    from rtdetr_export.bench import peer

    if options.model_path is not None:
        folder = Path(options.model_path)
        if not folder.is_dir():
            raise RTDetrExportError("--peer needs a transformers folder (or no --model for random weights)")
        hf = peer.load_transformers_model(folder, options.method)
    elif artifacts:
        raise RTDetrExportError("--peer with artifacts needs --model: the transformers folder they came from")
    else:
        from rtdetr_export.model import DEIMV2_PRESETS, DFINE_PRESETS, deimv2_preset, dfine_preset, \
            preset as preset_config

        name = options.preset or "r18vd"
        make_config = dfine_preset if name in DFINE_PRESETS else deimv2_preset if name in DEIMV2_PRESETS \
            else preset_config
        config = make_config(name, decoder_method=options.method or "default",
                             **({"image_size": options.image_size} if options.image_size else {}))
        if reason := peer.unsupported_reason(config):
            raise RTDetrExportError(reason)
        log(f"[bench] --peer: building transformers' {peer.peer_class(config).__name__} ({name}, seeded random "
            "weights) and loading ours from its save_pretrained folder")
        hf = peer.random_transformers_model(config)
        folder = peer.save_transformers_model(hf, tmp / "transformers_model")
    model = load_model(folder, method=options.method or hf.config.decoder_method, image_size=options.image_size)
    reason = peer.unsupported_reason(model.config)
    if reason:
        raise RTDetrExportError(reason)
    return hf, model


def prepare_models(options: BenchOptions, artifacts: list[Artifact], head: str, tmp: Path,
                   log: Log) -> BenchModels:
    """Load the reference, export what is missing into ``tmp``, and check every input size agrees."""
    hf, peer_skipped = None, None
    if options.peer:
        try:
            hf, model = _peer_source(options, artifacts, tmp, log)
        except RTDetrExportError as exc:
            if isinstance(exc, MissingDependencyError):
                raise
            peer_skipped, hf = f"no peer: {exc}", None
            log(f"[bench] {peer_skipped}")
            model = _load_reference(options, artifacts, log)
    else:
        model = _load_reference(options, artifacts, log)
    size = tuple(model.config.image_size)
    if options.image_size is not None and parse_image_size(options.image_size) != size:
        # Artifacts of ours rebuild their reference at their (opt) size: run it at the size asked for instead.
        size = parse_image_size(options.image_size)
        model.set_image_size(*size)
    for artifact in artifacts:
        artifact.check_size(size)
    models = BenchModels(model, list(artifacts), peer_skipped=peer_skipped)
    wants_onnx = "onnxruntime" in options.backends or "openvino" in options.backends
    runnable = ONNX_KINDS if "onnxruntime" in options.backends else OPENVINO_KINDS  # an IR runs on OpenVINO only
    if wants_onnx and not any(a.kind in runnable for a in artifacts):
        path = tmp / "ours.onnx"
        log(f"[bench] exporting {path.name} ({config_text(model)}, {head} head, dynamic batch)")
        start = time.time()
        export_onnx(model, path, OnnxExportOptions(dynamic_batch=True, head=head, top_k=options.top_k,
                                                   verify=False), log=lambda m: log("  " + m))
        models.exports["ours"] = {"seconds": round(time.time() - start, 1), "exporter": "torch.onnx (TorchScript)",
                                  "simplifier": "onnxslim", "dynamic_batch": True}
        models.artifacts.append(check_artifact(path, "ours"))
    if hf is not None:
        models.peer_model = hf
        if wants_onnx and head == "raw":
            from rtdetr_export.bench.peer import export_peer_onnx

            path = tmp / "peer.onnx"
            log("[bench] exporting the peer: transformers -> torch.onnx -> onnxslim (same opset, dynamic batch)")
            start = time.time()
            info = export_peer_onnx(hf, path, size)
            info["seconds"] = round(time.time() - start, 1)
            models.exports["peer"] = info
            models.artifacts.append(check_artifact(path, "peer"))
        elif wants_onnx:
            models.exports["peer"] = {"skipped": "the peer path has the raw head only (logits, pred_boxes)"}
    return models


def config_text(model: nn.Module) -> str:
    config = model.config
    return f"method {config.decoder_method}, input {config.image_size[0]}x{config.image_size[1]}"
