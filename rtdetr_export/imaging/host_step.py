"""The host step of a split artifact: query selection between its two graphs, and the detections head's top-k.

A split artifact (``rtdetr-export onnx --split``) leaves out of its graphs what edge runtimes cannot run (TopK,
GatherElements). This module does it on the host, in numpy, with the tie rule of ONNX TopK: of equal scores the
lower index comes first, so a split artifact selects exactly the cells the single graph selects on ONNX Runtime.
``HOST_STEP_VERSION`` is recorded in the sidecar; change it whenever what this module computes changes.
"""

from __future__ import annotations

import numpy as np

from rtdetr_export.imaging.boxes import sigmoid

HOST_STEP_VERSION = 1


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices [B, k] of each row's k highest ``scores`` [B, N], best first; ties: lower index first (ONNX TopK)."""
    # Negating is exact in floating point, and a stable sort keeps equal keys in index order.
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def gather_rows(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    """x[b, index[b, i], :] for every b, i: [B, N, F] -> [B, k, F]."""
    return np.take_along_axis(x, index[..., None], axis=1)


def select_cells(cells: dict[str, np.ndarray], num_queries: int) -> np.ndarray:
    """Query selection: the indices [B, num_queries] of the cells with the highest best class logit, best first."""
    return top_k_indices(cells["cell_logits"].max(-1), num_queries)


def query_rows(cells: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """The selected cells' query targets and reference boxes: graph 2's inputs other than the memory (a served split
    hands graph 1's memory to graph 2 directly, serving/split.py, so the host step need not carry it)."""
    return {"query_targets": gather_rows(cells["cell_targets"], index),
            "reference_logits": gather_rows(cells["cell_box_logits"], index)}


def gather_queries(cells: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """Graph 2's inputs (model/split.py QUERY_INPUTS) for the selected cells ``index``: their query targets and
    reference boxes, and the whole memory."""
    return {"memory": cells["memory"], **query_rows(cells, index)}


def select_queries(cells: dict[str, np.ndarray], num_queries: int) -> dict[str, np.ndarray]:
    """Graph 1's outputs (model/split.py CELL_OUTPUTS) -> graph 2's inputs: the top ``num_queries`` cells by
    their best class logit, their query targets and reference boxes, and the memory."""
    return gather_queries(cells, select_cells(cells, num_queries))


def top_detections(logits: np.ndarray, boxes: np.ndarray, orig_target_sizes: np.ndarray,
                   top_k: int) -> dict[str, np.ndarray]:
    """The detections head (model/heads.py DetectionsHead) on the raw outputs: logits [B, Q, C], boxes [B, Q, 4]
    cxcywh in [0, 1], orig_target_sizes [B, 2] (width, height) -> labels [B, K] int64, boxes [B, K, 4] xyxy pixels,
    scores [B, K], best first (ties: lower flat index first)."""
    num_classes = logits.shape[-1]
    cx, cy, w, h = np.moveaxis(boxes, -1, 0)
    xyxy = np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)
    xyxy = xyxy * np.tile(orig_target_sizes, (1, 2))[:, None, :].astype(xyxy.dtype)
    probs = sigmoid(logits).astype(logits.dtype).reshape(logits.shape[0], -1)
    index = top_k_indices(probs, top_k)
    query = index // num_classes
    return {"labels": (index - query * num_classes).astype(np.int64), "boxes": gather_rows(xyxy, query),
            "scores": np.take_along_axis(probs, index, axis=1)}
