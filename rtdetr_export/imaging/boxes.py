"""Box arithmetic shared by post-processing, verification, predict and eval: plain numpy functions."""

from __future__ import annotations

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in float64 (scores from logits)."""
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """[..., 4] centre/size boxes -> [..., 4] corner boxes, in the same units."""
    cx, cy, w, h = np.moveaxis(boxes, -1, 0)
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[..., 2:] - boxes[..., :2], 0, None).prod(-1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every xyxy box in a [N, 4] with every box in b [M, 4] -> [N, M]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    return inter / np.maximum(_area(a)[:, None] + _area(b)[None, :] - inter, 1e-12)


def paired_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of paired xyxy boxes a [K, 4] and b [K, 4] -> [K] (the diagonal of ``iou_matrix``)."""
    lt, rb = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    return inter / np.maximum(_area(a) + _area(b) - inter, 1e-12)
