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
- ``scores``: largest |score difference| over matched pairs (mean reported too).

The detections head returns (query, class) pairs; rows with bit-identical boxes come from one query, so
its first (highest-scoring) row stands for that query. Box coordinates need no rescaling: IoU is
scale-invariant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class AgreementThresholds:
    """Pass limits for FP16/INT8 artifacts (see docs/precision.md for the measurements behind them)."""

    min_matched: float
    min_label_agreement: float
    min_mean_iou: float
    max_score_abs: float
    top_n: int = 100
    match_iou: float = 0.5


@dataclass
class Detections:
    """One image's per-query detections, sorted by score (highest first)."""

    labels: np.ndarray  # [K] int
    scores: np.ndarray  # [K] float
    boxes: np.ndarray   # [K, 4] xyxy


def _xyxy(cxcywh: np.ndarray) -> np.ndarray:
    cx, cy, w, h = np.moveaxis(cxcywh.astype(np.float64), -1, 0)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def per_query_detections(outputs: dict[str, np.ndarray], head: str) -> list[Detections]:
    """Each image's detections, one per query, from a runner's outputs for ``head``."""
    images = []
    if head == "raw":
        logits = outputs["logits"].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-logits))
        for b in range(logits.shape[0]):
            order = np.argsort(-scores[b].max(-1), kind="stable")
            images.append(Detections(scores[b].argmax(-1)[order], scores[b].max(-1)[order],
                                     _xyxy(outputs["pred_boxes"][b])[order]))
        return images
    for b in range(outputs["labels"].shape[0]):
        boxes = outputs["boxes"][b]
        _, first = np.unique(np.ascontiguousarray(boxes).view(np.dtype((np.void, boxes.dtype.itemsize * 4))),
                             return_index=True)
        keep = np.sort(first)  # rows are sorted by score, so the first row of a box is its best class
        images.append(Detections(outputs["labels"][b][keep], outputs["scores"][b][keep].astype(np.float64),
                                 boxes[keep].astype(np.float64)))
    return images


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in a [N, 4] with every box in b [M, 4] -> [N, M]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


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


@dataclass
class AgreementComparison:
    """One batch of inputs through two runners, judged by detection agreement."""

    batch: int
    outputs: dict[str, dict] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"batch": self.batch, "outputs": self.outputs, "reordered_rows": 0, "flipped_rows": 0,
                "passed": not self.failures, "failures": self.failures}


def compare_agreement(ref: dict[str, np.ndarray], test: dict[str, np.ndarray], head: str,
                      thresholds: AgreementThresholds) -> AgreementComparison:
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
    score_max = float(diff.max(initial=0.0))
    t = thresholds
    result = AgreementComparison(len(refs))
    result.outputs = {
        "matched": {"agreement": matched, "compared": compared, "threshold": t.min_matched,
                    "passed": matched >= t.min_matched},
        "labels": {"agreement": labels, "threshold": t.min_label_agreement,
                   "passed": labels >= t.min_label_agreement},
        "boxes": {"mean_iou": mean_iou, "min_iou": float(iou.min(initial=1.0)) if iou.size else 0.0,
                  "threshold": t.min_mean_iou, "passed": mean_iou >= t.min_mean_iou},
        "scores": {"max_abs": score_max, "mean_abs": float(diff.mean()) if diff.size else 0.0,
                   "threshold": t.max_score_abs, "passed": score_max <= t.max_score_abs},
    }
    values = {"matched": matched, "labels": labels, "boxes": mean_iou, "scores": score_max}
    for name, entry in result.outputs.items():
        if not entry["passed"]:
            relation = ">" if name == "scores" else "<"
            result.failures.append(f"{name} at batch {result.batch}: {values[name]:.4g} {relation} threshold "
                                   f"{entry['threshold']:g}")
    return result
