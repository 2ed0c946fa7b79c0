"""Detection agreement: how a reduced-precision artifact's detections match the FP32 reference's.

FP16 and INT8 change logits by 1e-3..1e-1, enough to reorder near-tied queries or swap which encoder
cells the query selection keeps, so the FP32 tensor comparison (compare.py) cannot apply. What a user
needs instead is the same detections: per image, the reference's ``top_n`` highest-scoring detections
(one per query: its best class, score and box) are matched greedily, best score first, to the candidate's
detections by box IoU (at least ``match_iou``; among those, the same label first, then the highest IoU).
Reported and thresholded over every image of a run:

- ``matched``: fraction of reference detections that found a match;
- ``labels``: fraction whose match has the same label (an unmatched detection counts as a disagreement);
- ``boxes``: mean IoU over matched pairs (min IoU reported too);
- ``scores``: mean |score difference| over matched pairs (the largest is reported too).

Why the mean: measured on the trained fixture (docs/accuracy.md, "Agreement limits"), the largest score difference
does not track what a precision costs, not even over the detections the reference is confident in: a single
pair whose partner changed class moves it to 0.5-0.7 for recipes that cost 0.002-0.008 AP, while the mean
separates them (0.0002-0.009) from entropy calibration's 5-point loss (0.03-0.04).

The detections head returns (query, class) pairs; rows with bit-identical boxes come from one query, so
its first (highest-scoring) row stands for that query. Box coordinates need no rescaling: IoU is
scale-invariant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtdetr_export.imaging import Detections, cxcywh_to_xyxy, iou_matrix, sigmoid
from rtdetr_export.artifact.verification import BatchComparison, Check


@dataclass
class AgreementThresholds:
    """Pass limits for FP16/INT8 artifacts (see docs/precision.md for the measurements behind them)."""

    min_matched: float
    min_label_agreement: float
    min_mean_iou: float
    max_mean_score_abs: float
    top_n: int = 100
    match_iou: float = 0.5


def per_query_detections(outputs: dict[str, np.ndarray], head: str) -> list[Detections]:
    """Each image's detections, one per query, from a runner's outputs for ``head``."""
    images = []
    if head == "raw":
        scores = sigmoid(outputs["logits"])
        for b in range(scores.shape[0]):
            order = np.argsort(-scores[b].max(-1), kind="stable")
            images.append(Detections(cxcywh_to_xyxy(outputs["pred_boxes"][b].astype(np.float64))[order],
                                     scores[b].max(-1)[order], scores[b].argmax(-1)[order]))
        return images
    for b in range(outputs["labels"].shape[0]):
        boxes = outputs["boxes"][b]
        _, first = np.unique(np.ascontiguousarray(boxes).view(np.dtype((np.void, boxes.dtype.itemsize * 4))),
                             return_index=True)
        keep = np.sort(first)  # rows are sorted by score, so the first row of a box is its best class
        images.append(Detections(boxes[keep].astype(np.float64), outputs["scores"][b][keep].astype(np.float64),
                                 outputs["labels"][b][keep]))
    return images


@dataclass
class ImageMatch:
    """The pairs found for one image: reference index -> candidate index (-1: none)."""

    partner: np.ndarray
    iou: np.ndarray
    same_label: np.ndarray
    score_diff: np.ndarray


def match_image(ref: Detections, test: Detections, top_n: int, match_iou: float) -> ImageMatch:
    """Greedy matching of ref's ``top_n`` detections, best score first (see the module docstring)."""
    n = min(top_n, len(ref.scores))
    ious = iou_matrix(ref.boxes[:n], test.boxes) if len(test.scores) else np.zeros((n, 0))
    partner = np.full(n, -1)
    taken = np.zeros(len(test.scores), dtype=bool)
    for i in range(n):
        ok = (ious[i] >= match_iou) & ~taken
        if not ok.any():
            continue
        same = ok & (test.labels == ref.labels[i])
        pool = same if same.any() else ok
        j = int(np.argmax(np.where(pool, ious[i], -1.0)))
        partner[i], taken[j] = j, True
    hit = partner >= 0
    j = partner[hit]
    return ImageMatch(partner, ious[np.arange(n)[hit], j], test.labels[j] == ref.labels[:n][hit],
                      np.abs(test.scores[j] - ref.scores[:n][hit]))


def compare_agreement(ref: dict[str, np.ndarray], test: dict[str, np.ndarray], head: str,
                      thresholds: AgreementThresholds) -> BatchComparison:
    """Detection agreement of ``test`` with ``ref`` over every image of the batch."""
    refs, tests = per_query_detections(ref, head), per_query_detections(test, head)
    matches = [match_image(r, t, thresholds.top_n, thresholds.match_iou) for r, t in zip(refs, tests)]
    compared = sum(len(m.partner) for m in matches)
    iou = np.concatenate([m.iou for m in matches])
    same = np.concatenate([m.same_label for m in matches])
    diff = np.concatenate([m.score_diff for m in matches])
    matched = len(iou) / max(compared, 1)
    labels = float(same.sum()) / max(compared, 1)
    mean_iou = float(iou.mean()) if iou.size else 0.0
    score_mean = float(diff.mean()) if diff.size else 0.0
    t = thresholds
    # Agreement matches detections by IoU instead of re-pairing rows, so reordered/flipped rows stay 0.
    result = BatchComparison(len(refs), "agreement")
    result.outputs = {
        "matched": Check.judge("agreement", matched, t.min_matched, compared=compared),
        "labels": Check.judge("agreement", labels, t.min_label_agreement),
        "boxes": Check.judge("mean_iou", mean_iou, t.min_mean_iou,
                             min_iou=float(iou.min(initial=1.0)) if iou.size else 0.0),
        "scores": Check.judge("mean_abs", score_mean, t.max_mean_score_abs, max_abs=float(diff.max(initial=0.0))),
    }
    for name, check in result.outputs.items():
        if not check.passed:
            relation = "<" if check.higher_is_better else ">"
            result.failures.append(f"{name} at batch {result.batch}: {check.value:.4g} {relation} threshold "
                                   f"{check.threshold:g}")
    return result
