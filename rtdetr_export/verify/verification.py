"""Verify an exported artifact against the PyTorch reference on several inputs and batch sizes."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from rtdetr_export.backends import OnnxRuntimeRunner, Runner
from rtdetr_export.verify.agreement import AgreementThresholds, compare_agreement
from rtdetr_export.verify.compare import Thresholds, compare_detections, compare_raw, thresholds_for
from rtdetr_export.verify.inputs import verification_images
from rtdetr_export.verify.reference import ReferenceRunner


def make_feed(head: str, images: np.ndarray, sizes: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """Named inputs for a head; ``orig_target_sizes`` is (width, height) per image as the contract says."""
    feed = {"images": images}
    if head == "detections":
        feed["orig_target_sizes"] = np.array([[w, h] for h, w in sizes], dtype=np.int64)
    return feed


def compare_runners(reference: Runner, candidate: Runner, head: str, feeds: list[dict[str, np.ndarray]],
                    thresholds: Thresholds | AgreementThresholds) -> dict:
    """Run every feed through both runners and compare; returns a JSON-ready report."""
    runs = []
    with reference, candidate:
        for feed in feeds:
            ref, test = reference.infer(feed), candidate.infer(feed)
            if isinstance(thresholds, AgreementThresholds):  # fp16 / int8: detection agreement
                runs.append(compare_agreement(ref, test, head, thresholds).as_dict())
            elif head == "raw":
                runs.append(compare_raw(ref, test, thresholds).as_dict())
            else:
                scale = max(feed["images"].shape[2:]) / feed["orig_target_sizes"].max(1)
                runs.append(compare_detections(ref, test, thresholds, scale).as_dict())
    failures = [f for run in runs for f in run["failures"]]
    return {"passed": not failures, "head": head, "thresholds": asdict(thresholds), "runs": runs,
            "failures": failures}


def verify_onnx(model: torch.nn.Module, onnx_path: str | Path, head: str, batches: list[int],
                top_k: int = 300, images_dir: str | Path | None = None, precision: str = "fp32",
                thresholds: Thresholds | AgreementThresholds | None = None) -> dict:
    """ONNX Runtime (CPU) vs the PyTorch reference for each batch size; JSON-ready report.

    An FP16 file runs as FP32 compute with FP16 storage (precision/emulation.py): ONNX Runtime's CPU
    provider lacks most FP16 kernels and would otherwise skip most of the rounding.
    """
    thresholds = thresholds or thresholds_for(precision)
    size = model.config.image_size
    feeds = []
    for i, batch in enumerate(batches):
        images, sizes = verification_images(batch, size, images_dir, seed=i)
        feeds.append(make_feed(head, images, sizes))
    reference = ReferenceRunner(model, head, top_k)
    candidate, candidate_name = OnnxRuntimeRunner(onnx_path), "onnxruntime-cpu"
    if precision == "fp16":
        from rtdetr_export.precision.emulation import Fp16EmulationRunner

        candidate, candidate_name = Fp16EmulationRunner(onnx_path), "onnxruntime-cpu-fp16-emulated"
    report = compare_runners(reference, candidate, head, feeds, thresholds)
    report.update({"reference": "torch-fp32-cpu", "candidate": candidate_name, "precision": precision,
                   "inputs": str(images_dir) if images_dir else "synthetic"})
    return report
