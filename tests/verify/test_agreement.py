"""Reduced-precision files are proven by detection agreement (verify/agreement.py): matched detections, the same
labels, overlapping boxes, close scores, each against its precision's limits."""

from __future__ import annotations

import numpy as np

from rtdetr_export.artifact import open_artifact
from rtdetr_export.verify import compare_agreement, thresholds_for


def _raw_outputs(seed: int, batch: int = 2, queries: int = 30, classes: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (batch, queries, classes)).astype(np.float32)
    centres = rng.uniform(0.2, 0.8, (batch, queries, 2))
    sizes = rng.uniform(0.05, 0.3, (batch, queries, 2))
    return {"logits": logits, "pred_boxes": np.concatenate([centres, sizes], -1).astype(np.float32)}


def test_an_fp16_file_was_proven_by_detection_agreement_when_it_was_made(micro_fp16):
    verification = open_artifact(micro_fp16).verification
    assert verification.passed and verification.precision == "fp16"
    assert verification.runs and all(run.kind == "agreement" for run in verification.runs)


def test_identical_detections_agree_and_swapped_labels_do_not():
    reference = _raw_outputs(seed=3)
    thresholds = thresholds_for("fp16")
    assert not compare_agreement(reference, {k: v.copy() for k, v in reference.items()}, "raw", thresholds).failures
    swapped = {**reference, "logits": np.roll(reference["logits"], 1, axis=-1)}  # every query's best class moves
    failures = compare_agreement(reference, swapped, "raw", thresholds).failures
    assert failures and any("labels" in failure for failure in failures)
