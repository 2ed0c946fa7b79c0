"""The two output contracts an exported graph can have (see docs/tensor-contract.md).

- ``raw``: ``images`` -> ``logits`` [N, Q, C] (pre-sigmoid), ``pred_boxes`` [N, Q, 4] (cxcywh in [0, 1]),
  the meaning of transformers' outputs.
- ``detections``: ``images``, ``orig_target_sizes`` [N, 2] int64 (width, height) -> ``labels`` [N, K] int64,
  ``boxes`` [N, K, 4] xyxy pixels, ``scores`` [N, K], sorted by score: the original repo's deploy contract.
"""

from __future__ import annotations

import torch
from torch import nn

from rtdetr_export.model.query_selection import topk_lower_index_first

HEADS = ("raw", "detections")
INPUTS = {"raw": ["images"], "detections": ["images", "orig_target_sizes"]}
OUTPUTS = {"raw": ["logits", "pred_boxes"], "detections": ["labels", "boxes", "scores"]}


class RawHead(nn.Module):
    """The model as is: logits and normalised boxes per query."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(images)


class DetectionsHead(nn.Module):
    """Model + top-k over queries x classes + boxes scaled to each image's size, all inside the graph."""

    def __init__(self, model: nn.Module, top_k: int, with_query: bool = False):
        super().__init__()
        self.model = model
        self.top_k = top_k
        self.with_query = with_query  # verification also wants the query behind each detection; never exported

    def forward(self, images: torch.Tensor, orig_target_sizes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, boxes = self.model(images)
        num_classes = logits.shape[-1]
        cx, cy, w, h = boxes.unbind(-1)
        xyxy = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
        xyxy = xyxy * orig_target_sizes.repeat(1, 2).unsqueeze(1).to(xyxy.dtype)
        scores, index = topk_lower_index_first(torch.sigmoid(logits).flatten(1), self.top_k, dim=-1)
        # Integer division instead of Mod: every runtime (TensorRT, NPUs) has Div/Mul/Sub on int64.
        query = torch.div(index, num_classes, rounding_mode="trunc")  # indices are >= 0
        labels = index - query * num_classes
        picked = xyxy.gather(1, query.unsqueeze(-1).expand(-1, -1, 4))
        if self.with_query:
            return labels, picked, scores, query
        return labels, picked, scores


def wrap(model: nn.Module, head: str, top_k: int = 300, with_query: bool = False) -> nn.Module:
    """The export module for a head name (``with_query``: detections also return their query index)."""
    if head == "raw":
        return RawHead(model)
    if head == "detections":
        return DetectionsHead(model, top_k, with_query)
    raise ValueError(f"unknown head {head!r}")
