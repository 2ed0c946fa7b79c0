"""Model outputs -> detections: sigmoid, top-k over queries x classes, cxcywh -> xyxy pixels, threshold.

The same rule as transformers' ``post_process_object_detection`` (focal-loss branch) and the original
``RTDETRPostProcessor``; every backend's raw outputs go through these plain functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtdetr_export.imaging.boxes import cxcywh_to_xyxy, sigmoid


@dataclass
class Detections:
    """Detections of one image, best first: boxes [K, 4] xyxy (pixels, or normalised where a caller says so),
    scores [K], labels [K] (class indices). The one detections type of the package."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def to_list(self, class_names: list[str] | None = None) -> list[dict]:
        """JSON-ready records."""
        return [{"label": int(label), "name": class_names[int(label)] if class_names else str(int(label)),
                 "score": float(score), "box": [float(v) for v in box]}
                for box, score, label in zip(self.boxes, self.scores, self.labels)]


def postprocess(logits: np.ndarray, boxes: np.ndarray, image_sizes: list[tuple[int, int]],
                threshold: float = 0.5, top_k: int | None = None) -> list[Detections]:
    """logits [N, Q, C] and boxes [N, Q, 4] -> one Detections per image.

    ``image_sizes`` are the original (height, width) of each image; ``top_k`` defaults to Q. Results are
    sorted by descending score (ties keep the lower flat index first, as ONNX TopK and the reference do).
    """
    n, q, c = logits.shape
    top_k = q if top_k is None else min(top_k, q * c)
    probs = sigmoid(logits).reshape(n, q * c)
    xyxy = cxcywh_to_xyxy(boxes.astype(np.float64))
    results = []
    for i in range(n):
        order = np.argsort(-probs[i], kind="stable")[:top_k]
        scores = probs[i, order]
        labels, queries = order % c, order // c
        height, width = image_sizes[i]
        picked = xyxy[i, queries] * np.array([width, height, width, height], dtype=np.float64)
        keep = scores > threshold
        results.append(Detections(picked[keep].astype(np.float32), scores[keep].astype(np.float32),
                                  labels[keep].astype(np.int64)))
    return results
