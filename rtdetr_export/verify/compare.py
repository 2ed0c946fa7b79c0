"""Compare any two runners' outputs: per-output error statistics and detection agreement.

Outputs are per-query rows, and a runtime's float noise can swap two queries whose selection scores are
within ~1e-6 of each other. So rows are first aligned (identity when it already matches, else a one-to-one
nearest-row assignment); the report says how many rows had to move, and the errors are measured after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Thresholds:
    """Pass limits for one precision (see docs/verification.md)."""

    max_abs: float = 1e-4          # raw head: logits and pred_boxes
    box_px: float = 1e-3           # detections head: box corners in pixels
    score_abs: float = 1e-4        # detections head: scores
    min_label_agreement: float = 1.0
    # The discrete sampler rounds locations to cells; float noise of ~1e-7 between runtimes moves a location
    # that sits on a rounding boundary to the neighbouring cell. Such rows are counted and reported, and
    # pass only while they are rare and still close (see docs/verification.md).
    flip_rows_fraction: float = 0.0
    flip_max_abs: float = 1e-2


PRECISION_THRESHOLDS = {"fp32": Thresholds()}


def thresholds_for(precision: str, method: str) -> Thresholds:
    """The pass limits for a precision and sampler (discrete tolerates rare rounding-boundary flips)."""
    base = PRECISION_THRESHOLDS[precision]
    if method == "discrete":
        return Thresholds(**{**base.__dict__, "flip_rows_fraction": 0.01})
    return base


@dataclass
class OutputStats:
    max_abs: float
    mean_abs: float
    max_rel: float

    def as_dict(self) -> dict[str, float]:
        return {"max_abs": self.max_abs, "mean_abs": self.mean_abs, "max_rel": self.max_rel}


def tensor_stats(ref: np.ndarray, test: np.ndarray) -> OutputStats:
    """Max/mean absolute and max relative error of ``test`` against ``ref``."""
    ref64, test64 = ref.astype(np.float64), test.astype(np.float64)
    diff = np.abs(ref64 - test64)
    rel = diff / np.maximum(np.abs(ref64), 1e-6)
    return OutputStats(float(diff.max(initial=0.0)), float(diff.mean()) if diff.size else 0.0,
                       float(rel.max(initial=0.0)))


def align_rows(ref: np.ndarray, test: np.ndarray, tol: float) -> np.ndarray:
    """Permutation p of test's rows [K, F] so that test[p] best matches ref; identity when already within tol."""
    k = ref.shape[0]
    if np.abs(ref - test).max(initial=0.0) <= tol:
        return np.arange(k)
    dist = np.abs(ref[:, None, :] - test[None, :, :]).max(-1)
    perm = np.full(k, -1)
    taken = np.zeros(k, dtype=bool)
    for flat in np.argsort(dist, axis=None, kind="stable"):
        i, j = divmod(int(flat), k)
        if perm[i] < 0 and not taken[j]:
            perm[i], taken[j] = j, True
    return perm


@dataclass
class RunComparison:
    """One batch of inputs through two runners."""

    batch: int
    outputs: dict[str, dict] = field(default_factory=dict)
    reordered_rows: int = 0
    flipped_rows: int = 0
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"batch": self.batch, "outputs": self.outputs, "reordered_rows": self.reordered_rows,
                "flipped_rows": self.flipped_rows,
                "passed": not self.failures, "failures": self.failures}


def compare_raw(ref: dict[str, np.ndarray], test: dict[str, np.ndarray], thresholds: Thresholds) -> RunComparison:
    """Raw head: align queries per image, then logits and pred_boxes against ``thresholds.max_abs``."""
    batch = ref["logits"].shape[0]
    result = RunComparison(batch)
    aligned = {name: np.empty_like(test[name]) for name in ("logits", "pred_boxes")}
    for b in range(batch):
        rows_ref = np.concatenate([ref["logits"][b], ref["pred_boxes"][b]], axis=-1).astype(np.float64)
        rows_test = np.concatenate([test["logits"][b], test["pred_boxes"][b]], axis=-1).astype(np.float64)
        perm = align_rows(rows_ref, rows_test, thresholds.max_abs)
        result.reordered_rows += int((perm != np.arange(len(perm))).sum())
        for name in aligned:
            aligned[name][b] = test[name][b][perm]
    row_err = np.maximum(np.abs(ref["logits"] - aligned["logits"]).max(-1),
                         np.abs(ref["pred_boxes"] - aligned["pred_boxes"]).max(-1))
    flipped = row_err > thresholds.max_abs
    result.flipped_rows = int(flipped.sum())
    flips_ok = flipped.mean() <= thresholds.flip_rows_fraction and row_err.max() <= thresholds.flip_max_abs
    for name in ("logits", "pred_boxes"):
        stats = tensor_stats(ref[name], aligned[name])
        within = tensor_stats(ref[name][~flipped], aligned[name][~flipped]) if flips_ok else stats
        passed = within.max_abs <= thresholds.max_abs
        result.outputs[name] = {**stats.as_dict(), "max_abs_unflipped": within.max_abs,
                                "threshold": thresholds.max_abs, "passed": passed}
        if not passed:
            result.failures.append(f"{name} at batch {batch}: max abs diff {stats.max_abs:.3g} "
                                   f"> {thresholds.max_abs:g}")
    return result


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of paired xyxy boxes [K, 4] and [K, 4] -> [K]."""
    lt, rb = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


def compare_detections(ref: dict[str, np.ndarray], test: dict[str, np.ndarray], thresholds: Thresholds,
                       box_scale: np.ndarray | None = None) -> RunComparison:
    """Detections head: align detections per image, then label agreement, box error (px), IoU, score error.

    Box errors are in pixels of the model's input resolution: ``box_scale`` [N] = input size / original
    size of each image, because float32 noise in a normalised box grows with the size it is scaled to.
    """
    batch = ref["labels"].shape[0]
    if box_scale is not None:
        ref = {**ref, "boxes": ref["boxes"] * box_scale[:, None, None]}
        test = {**test, "boxes": test["boxes"] * box_scale[:, None, None]}
    result = RunComparison(batch)
    box_err, score_err, ious, agree, total = 0.0, 0.0, [], 0, 0
    for b in range(batch):
        feat = lambda o: np.concatenate(  # noqa: E731
            [o["labels"][b][:, None] * 1e6, o["boxes"][b], o["scores"][b][:, None] * 1e3], -1).astype(np.float64)
        perm = align_rows(feat(ref), feat(test), thresholds.box_px)
        result.reordered_rows += int((perm != np.arange(len(perm))).sum())
        agree += int((ref["labels"][b] == test["labels"][b][perm]).sum())
        total += len(perm)
        box_err = max(box_err, float(np.abs(ref["boxes"][b] - test["boxes"][b][perm]).max(initial=0.0)))
        score_err = max(score_err, float(np.abs(ref["scores"][b] - test["scores"][b][perm]).max(initial=0.0)))
        ious.append(box_iou(ref["boxes"][b].astype(np.float64), test["boxes"][b][perm].astype(np.float64)))
    iou = np.concatenate(ious) if ious else np.zeros(0)
    agreement = agree / max(total, 1)
    result.outputs = {
        "labels": {"agreement": agreement, "threshold": thresholds.min_label_agreement,
                   "passed": agreement >= thresholds.min_label_agreement},
        "boxes": {"max_abs_px": box_err, "min_iou": float(iou.min(initial=1.0)), "mean_iou": float(iou.mean())
                  if iou.size else 1.0, "threshold": thresholds.box_px, "passed": box_err <= thresholds.box_px},
        "scores": {"max_abs": score_err, "threshold": thresholds.score_abs,
                   "passed": score_err <= thresholds.score_abs},
    }
    for name, entry in result.outputs.items():
        if not entry["passed"]:
            value = {"labels": agreement, "boxes": box_err, "scores": score_err}[name]
            result.failures.append(f"{name} at batch {batch}: {value:.4g} vs threshold {entry['threshold']:g}")
    return result
