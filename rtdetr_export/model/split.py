"""The detector cut at query selection, for runtimes without TopK or GatherElements (ncnn, NPUs).

``CellScoring`` is everything before query selection (backbone, hybrid encoder, the decoder's input projection,
``enc_output`` and the encoder's score and box heads); ``QueryDecoding`` everything after it (the decoder layers
from the selected queries). The host picks the top-k cells between them (imaging/host_step.py). Both wrap the
model's own parts, so an export of them carries the very weights the reference computes with.

RT-DETRv2 and D-FINE are cut at the same place, through the same two decoder methods (``encode_cells``, ``decode``),
so one host step, one sidecar kind and one runner serve both. What differs for D-FINE, and why:
- graph 2 starts D-FINE's box chain: layer 0's initial box (``pre_bbox_head`` on the selected reference box) and
  the edge distributions every later layer refines (model/fdr.py) are all after query selection, so nothing of the
  FDR head crosses the cut; graph 1's per-cell outputs are RT-DETRv2's (D-FINE selects queries as RT-DETRv2 does);
- graph 2 would hold a TopK of D-FINE's own: the LQE reads the top 4 probabilities of each edge's distribution.
  The split export writes it with Max/Min (``RTDETRv2.set_topk_free_heads``, model/fdr.py ``top_values``): the
  same values exactly, so graph 2 is still the reference's numbers, and the split keeps its promise of no TopK
  (pnnx crashes converting D-FINE's TopK; NPUs reject TopK);
- D-FINE's decoder has no learned query embedding (RT-DETR v1's ``tgt_embed``): graph 2 decodes the selected
  cells' own targets, as for RT-DETRv2.
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
