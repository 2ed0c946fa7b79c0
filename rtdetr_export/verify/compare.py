"""Compare any two runners' outputs: per-output error statistics and detection agreement.

Outputs are per-query rows, and a runtime's float noise can swap two queries whose selection scores are
within ~1e-6 of each other. So rows are first aligned (identity when it already matches, else a one-to-one
nearest-row assignment); the report says how many rows had to move, and the errors are measured after it.

With the discrete sampler, a row may also differ because a sampling location sat on a rounding boundary
(verify/margins.py). The comparator only names the suspects: failing rows whose query the reference saw
near a boundary, when few rows need it. ``confirm_flips`` then judges the candidate against the reference
re-run with those roundings flipped; only if that run matches within the same limits are the rows excused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtdetr_export.imaging.boxes import paired_iou
from rtdetr_export.verify.agreement import AgreementThresholds
from rtdetr_export.verify.margins import FLIP_MARGIN
from rtdetr_export.artifact.verification import BatchComparison, Check

MARGIN, QUERY = "_margin", "_query"


@dataclass
class Thresholds:
    """Pass limits for one precision (see docs/onnx-export.md, "Verification report")."""

    max_abs: float = 1e-4          # raw head: logits and pred_boxes
    # Detections head: box corners in pixels of the model's input resolution. Two correct float32 runtimes
    # reading the same cells differ by up to ~1e-3 px at 640 on r18vd and 1.7e-3 px on r50vd (measured,
    # docs/onnx-export.md), so 1e-2 px keeps ~6x headroom over that noise.
    box_px: float = 1e-2
    score_abs: float = 1e-4        # detections head: scores
    min_label_agreement: float = 1.0
    # Rounding-boundary flips (discrete sampler only): at most this fraction of rows may be explained as flips.
    flip_rows_fraction: float = 0.01


# FP16 and INT8 are judged by detection agreement (verify/agreement.py), with limits derived on the trained fixture
# (docs/accuracy.md, "Agreement limits"; benchmarks/fixture/agreement.py). There every INT8 recipe that costs at
# most 0.004 AP reads matched >= 0.91, labels >= 0.86, mean IoU >= 0.91, mean score diff <= 0.020 (the discrete
# fine-tune's minmax file is the lowest), while entropy calibration (0.052 AP) reads matched 0.81-0.90, labels
# 0.76-0.80, IoU 0.875-0.886, score 0.030-0.041; FP16 reads >= 0.994 / 0.994 / 0.997 / 0.0002 and OpenVINO's bf16
# (0.0075 AP) >= 0.980 / 0.940 / 0.967 / 0.0132 (the last on all 200 val images).
PRECISION_THRESHOLDS: dict[str, Thresholds | AgreementThresholds] = {
    "fp32": Thresholds(),
    "fp16": AgreementThresholds(min_matched=0.95, min_label_agreement=0.9, min_mean_iou=0.93, max_mean_score_abs=0.02),
    "int8": AgreementThresholds(min_matched=0.85, min_label_agreement=0.82, min_mean_iou=0.89,
                                max_mean_score_abs=0.025),
}
# An FP32 file run under a bf16 inference hint (OpenVINO) is reduced precision too: judged by agreement, with
# FP16's limits (docs/precision.md, "BF16 on OpenVINO", has the runs measured against them).
PRECISION_THRESHOLDS["bf16"] = PRECISION_THRESHOLDS["fp16"]


def judged_precision(precision: str, hint: str | None = None) -> str:
    """The precision whose limits judge a file of ``precision`` run under a runtime precision ``hint``: an
    FP32 file under bf16 is judged as bf16; a hint never makes FP16/INT8 limits stricter or looser."""
    return "bf16" if hint == "bf16" and precision == "fp32" else precision


def thresholds_for(precision: str) -> Thresholds | AgreementThresholds:
    """The default pass limits for a precision."""
    return PRECISION_THRESHOLDS[precision]


def tensor_stats(ref: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Max/mean absolute and max relative error of ``test`` against ``ref``."""
    ref64, test64 = ref.astype(np.float64), test.astype(np.float64)
    diff = np.abs(ref64 - test64)
    rel = diff / np.maximum(np.abs(ref64), 1e-6)
    return {"max_abs": float(diff.max(initial=0.0)), "mean_abs": float(diff.mean()) if diff.size else 0.0,
            "max_rel": float(rel.max(initial=0.0))}


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


def suspected_flips(severity: np.ndarray, bad: np.ndarray, margins: np.ndarray | None,
                    queries: np.ndarray) -> np.ndarray | None:
    """[N, Q]: for each query behind a failing row (``bad`` [N, K]) that the reference saw near a rounding
    boundary, the worst ``severity`` [N, K] of its rows; 0 elsewhere. None when there is nothing to suspect.

    ``margins`` [N, Q] are the reference's rounding margins per query (None: not the discrete sampler) and
    ``queries`` [N, K] the query behind each row.
    """
    if margins is None or not bad.any():
        return None
    near = bad & (np.take_along_axis(margins, queries, axis=1) < FLIP_MARGIN)
    if not near.any():
        return None
    suspects = np.zeros(margins.shape)
    for b, k in zip(*np.nonzero(near)):
        suspects[b, queries[b, k]] = max(suspects[b, queries[b, k]], severity[b, k])
    return suspects


def confirm_flips(plain: BatchComparison, flipped: BatchComparison, flip: np.ndarray,
                  thresholds: Thresholds, head: str) -> BatchComparison:
    """Judge a run by its comparison against the reference re-run with the ``flip`` [N, Q] queries'
    near-boundary roundings taken the other way (verification.compare_outputs picks them).

    The flips are confirmed, and the rows excused, only if that re-run matches the candidate within the
    same limits everywhere and at most ``flip_rows_fraction`` of the queries needed it. The raw head is then
    judged by ``max_abs_unflipped`` (the error once the flips are re-rounded), keeping the plain statistics;
    the detections head by the flipped comparison, keeping the plain worst box error as ``max_abs_px_all``.
    """
    count = int(flip.sum())
    if flipped.failures or count > thresholds.flip_rows_fraction * flip.size:
        why = (f"{count} of {flip.size} queries would need a rounding flip, above the "
               f"{thresholds.flip_rows_fraction:g} allowed" if not flipped.failures else
               f"rounding {count} near-boundary queries the other way in the reference does not reproduce the "
               f"candidate ({'; '.join(flipped.failures)})")
        return BatchComparison(plain.batch, plain.kind, plain.outputs, plain.reordered_rows, 0,
                               plain.failures + [why])
    outputs = {}
    for name, before in plain.outputs.items():
        after = flipped.outputs[name]
        if head == "raw":
            outputs[name] = Check(before.metric, after.stats["max_abs"], before.threshold, after.passed,
                                  before.stats)
        else:
            stats = dict(after.stats)
            if "max_abs_px_all" in before.stats:
                stats["max_abs_px_all"] = before.stats["max_abs_px_all"]
            outputs[name] = Check(after.metric, after.value, after.threshold, after.passed, stats)
    return BatchComparison(plain.batch, plain.kind, outputs, plain.reordered_rows, count, [])


def compare_raw(ref: dict[str, np.ndarray], test: dict[str, np.ndarray], thresholds: Thresholds) -> BatchComparison:
    """Raw head: align queries per image, then logits and pred_boxes against ``thresholds.max_abs``."""
    batch = ref["logits"].shape[0]
    result = BatchComparison(batch)
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
    queries = np.broadcast_to(np.arange(row_err.shape[1]), row_err.shape)
    result.suspected_flips = suspected_flips(row_err, row_err > thresholds.max_abs, ref.get(MARGIN), queries)
    for name in ("logits", "pred_boxes"):
        stats = tensor_stats(ref[name], aligned[name])
        check = result.outputs[name] = Check.judge("max_abs_unflipped", stats["max_abs"], thresholds.max_abs,
                                                   **stats)
        if not check.passed:
            result.failures.append(f"{name} at batch {batch}: max abs diff {stats['max_abs']:.3g} "
                                   f"> {thresholds.max_abs:g}")
    return result


def compare_detections(ref: dict[str, np.ndarray], test: dict[str, np.ndarray], thresholds: Thresholds,
                       box_scale: np.ndarray | None = None) -> BatchComparison:
    """Detections head: align detections per image, then label agreement, box error (px), IoU, score error.

    Box errors are in pixels of the model's input resolution: ``box_scale`` [N] = input size / original
    size of each image, because float32 noise in a normalised box grows with the size it is scaled to.
    """
    batch, k = ref["labels"].shape
    scale = np.ones(batch) if box_scale is None else np.asarray(box_scale, dtype=np.float64)
    ref_boxes = ref["boxes"].astype(np.float64) * scale[:, None, None]
    test_boxes = test["boxes"].astype(np.float64) * scale[:, None, None]
    result = BatchComparison(batch)
    aligned = {"labels": np.empty_like(test["labels"]), "boxes": np.empty_like(test_boxes),
               "scores": np.empty_like(test["scores"])}
    for b in range(batch):
        feat = lambda labels, boxes, scores: np.concatenate(  # noqa: E731
            [labels[:, None] * 1e6, boxes, scores[:, None] * 1e3], -1).astype(np.float64)
        perm = align_rows(feat(ref["labels"][b], ref_boxes[b], ref["scores"][b]),
                          feat(test["labels"][b], test_boxes[b], test["scores"][b]), thresholds.box_px)
        result.reordered_rows += int((perm != np.arange(len(perm))).sum())
        aligned["labels"][b], aligned["boxes"][b] = test["labels"][b][perm], test_boxes[b][perm]
        aligned["scores"][b] = test["scores"][b][perm]

    label_ok = ref["labels"] == aligned["labels"]
    box_err = np.abs(ref_boxes - aligned["boxes"]).max(-1)
    score_err = np.abs(ref["scores"].astype(np.float64) - aligned["scores"]).astype(np.float64)
    bad = ~label_ok | (box_err > thresholds.box_px) | (score_err > thresholds.score_abs)
    if MARGIN in ref and QUERY in ref:
        queries = ref[QUERY].astype(np.int64)
        size = np.max(np.abs(ref_boxes), initial=1.0)  # severity: boxes normalised; a label change is worst
        severity = np.maximum(box_err / size, score_err) + (~label_ok)
        result.suspected_flips = suspected_flips(severity, bad, ref[MARGIN], queries)
    agreement = float(label_ok.mean()) if label_ok.size else 1.0
    iou = paired_iou(ref_boxes.reshape(-1, 4), aligned["boxes"].reshape(-1, 4))
    box_max = float(box_err.max(initial=0.0))
    score_max = float(score_err.max(initial=0.0))
    result.outputs = {
        "labels": Check.judge("agreement", agreement, thresholds.min_label_agreement),
        "boxes": Check.judge("max_abs_px", box_max, thresholds.box_px, max_abs_px_all=box_max,
                             min_iou=float(iou.min(initial=1.0)), mean_iou=float(iou.mean()) if iou.size else 1.0),
        "scores": Check.judge("max_abs", score_max, thresholds.score_abs),
    }
    for name, check in result.outputs.items():
        if not check.passed:
            result.failures.append(f"{name} at batch {batch}: {check.value:.4g} vs threshold {check.threshold:g}")
    return result
