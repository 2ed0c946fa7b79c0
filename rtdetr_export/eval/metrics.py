"""COCO box metrics of one set of predictions, computed by faster-coco-eval (the evaluator the original RT-DETR
code uses); no AP arithmetic of our own beyond reading its accumulated arrays."""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtdetr_export.errors import MissingDependencyError

# The 12 numbers COCOeval.summarize() prints, in its order.
STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100", "AR_small",
              "AR_medium", "AR_large")


@dataclass
class CocoMetrics:
    """AP/AR as COCO defines them, per-class AP (0.50:0.95, all areas, 100 detections) and PR curves."""

    stats: dict[str, float]
    per_class: dict[str, float]
    recall: list[float] = field(default_factory=list)          # the 101 recall points
    precision_50: list[float] = field(default_factory=list)    # mean over classes at IoU 0.50
    precision_avg: list[float] = field(default_factory=list)   # mean over classes and IoU 0.50:0.95

    def to_json(self) -> dict[str, Any]:
        return {**self.stats, "per_class": self.per_class}


def _evaluator():
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError:
        raise MissingDependencyError("eval needs faster-coco-eval: pip install faster-coco-eval") from None
    return COCO, COCOeval_faster


def coco_metrics(ground_truth: dict[str, Any], predictions: list[dict[str, Any]],
                 category_names: dict[int, str]) -> CocoMetrics:
    """Metrics of ``predictions`` (COCO results: image_id, category_id, bbox xywh, score) on ``ground_truth``."""
    COCO, COCOeval = _evaluator()
    gt = COCO()
    gt.dataset = copy.deepcopy(ground_truth)
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if predictions:
            dt = gt.loadRes(copy.deepcopy(predictions))
        else:  # no detection at all: every AP is 0, which COCOeval cannot compute from an empty result set
            return CocoMetrics({name: 0.0 for name in STAT_NAMES}, {n: 0.0 for n in category_names.values()})
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.params.imgIds = [image["id"] for image in ground_truth["images"]]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats)}
    precision = np.asarray(evaluator.eval["precision"])  # [IoU thresholds, recall points, classes, areas, maxDets]
    cat_ids = list(evaluator.params.catIds)
    per_class = {}
    for k, cat_id in enumerate(cat_ids):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[category_names[cat_id]] = float(values.mean()) if values.size else -1.0

    def curve(block: np.ndarray) -> list[float]:
        masked = np.where(block > -1, block, np.nan)
        with warnings.catch_warnings():  # a class with no ground truth is all -1: "mean of empty slice"
            warnings.simplefilter("ignore", category=RuntimeWarning)
            return [float(v) if np.isfinite(v) else 0.0 for v in np.nanmean(masked, axis=-1)]

    recall = [float(r) for r in evaluator.params.recThrs]
    return CocoMetrics(stats, per_class, recall, curve(precision[0, :, :, 0, -1]),
                       curve(precision[:, :, :, 0, -1].transpose(1, 0, 2).reshape(len(recall), -1)))

