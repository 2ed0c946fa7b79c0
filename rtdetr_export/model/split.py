"""The detector cut at query selection, for runtimes without TopK or GatherElements (ncnn, NPUs).

``CellScoring`` is everything before query selection (backbone, hybrid encoder, the decoder's input projection,
``enc_output`` and the encoder's score and box heads); ``QueryDecoding`` everything after it (the decoder layers
from the selected queries). The host picks the top-k cells between them (imaging/host_step.py). Both wrap the
model's own parts, so an export of them carries the very weights the reference computes with.
"""

from __future__ import annotations

import torch
from torch import nn

# Graph 1's outputs and graph 2's inputs, by name (the host step reads and writes these).
CELL_OUTPUTS = ["memory", "cell_targets", "cell_logits", "cell_box_logits"]
QUERY_INPUTS = ["memory", "query_targets", "reference_logits"]


class CellScoring(nn.Module):
    """images -> the encoder memory [B, N, D] and, per encoder cell, the query target it would seed (``enc_output``)
    [B, N, D], its class logits [B, N, C] and its unactivated reference box (``enc_bbox_head`` + anchor) [B, N, 4].

    The box head runs on every cell rather than on the k selected ones: it is row-wise, so the selected rows
    are the same numbers up to float rounding, and graph 2 needs no anchor table. The cost: the 3-layer MLP over N
    cells instead of K (r18vd at 640: 8400 rows instead of 300, about 2.2 GFLOP more)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        decoder = self.model.decoder
        feats = self.model.encoder(self.model.backbone(images))
        memory, cell_targets, cell_logits, anchors, _ = decoder.encode_cells(feats)
        return memory, cell_targets, cell_logits, decoder.enc_bbox_head(cell_targets) + anchors


class QueryDecoding(nn.Module):
    """The selected queries' targets [B, K, D] and reference boxes [B, K, 4] (logit space) with the encoder memory
    -> logits [B, K, C], boxes [B, K, 4] (cxcywh in [0, 1]): the raw head of the whole model."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, memory: torch.Tensor, query_targets: torch.Tensor,
                reference_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        decoder = self.model.decoder
        # The level shapes of the size the model is built for: a split graph has a fixed input size.
        return decoder.decode(query_targets, reference_logits, memory, decoder.anchor_shapes)
