"""Query selection: anchors over every encoder cell, then the top-k cells by class score seed the decoder."""

from __future__ import annotations

from typing import Callable

import torch

# (best-class score of every cell [B, cells], the cells chosen [B, k]) -> the cells to use [B, k]: verification's
# seam into query selection (RTDETRv2.observe_selection).
SelectionObserver = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Anchors outside the valid band get this logit instead of +inf: sigmoid still saturates to exactly 1.0 in
# float32 (and float16), so outputs match the reference, while the graph holds no infinities that break
# NPU quantizers and FP16 conversion.
INVALID_ANCHOR_LOGIT = 1.0e4


def generate_anchors(spatial_shapes: list[tuple[int, int]], grid_size: float = 0.05,
                     eps: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor logits [1, sum(H*W), 4] (cxcywh, inverse-sigmoid) and the valid mask [1, sum(H*W), 1]."""
    anchors = []
    for level, (h, w) in enumerate(spatial_shapes):
        grid_y, grid_x = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                                        torch.arange(w, dtype=torch.float32), indexing="ij")
        xy = torch.stack([(grid_x + 0.5) / w, (grid_y + 0.5) / h], dim=-1)
        wh = torch.full_like(xy, grid_size * 2.0 ** level)
        anchors.append(torch.cat([xy, wh], dim=-1).reshape(1, h * w, 4))
    boxes = torch.cat(anchors, dim=1)
    valid = ((boxes > eps) & (boxes < 1 - eps)).all(-1, keepdim=True)
    logits = torch.log(boxes / (1 - boxes))
    logits = torch.where(valid, logits, torch.full_like(logits, INVALID_ANCHOR_LOGIT))
    return logits, valid


class CellAnchors:
    """The anchors of the encoder's cells, kept by the decoder modules that select queries over them (RT-DETRv2's,
    D-FINE's and so DEIMv2's; a mixin, so the buffers stay ``decoder.anchors`` / ``decoder.valid_mask``, the names
    original checkpoints store them under).

    Precomputed for the input size the model is built at (a static export's constants); computed from the level
    shapes in the graph when ``sizes_in_graph`` is set (dynamic-size exports) or when an input of another size
    arrives in eager mode."""

    def init_cell_anchors(self, config) -> None:
        self.anchor_eps, self.anchor_grid_size = config.anchor_eps, config.anchor_grid_size
        self.level_strides = config.level_strides
        self.register_buffer("anchors", torch.zeros(1, 0, 4), persistent=False)
        self.register_buffer("valid_mask", torch.zeros(1, 0, 1, dtype=torch.bool), persistent=False)
        self.anchor_shapes: list[tuple[int, int]] = []  # the level shapes ``anchors`` were built for
        # True only in dynamic-size exports: anchors come from the traced map shapes, never from the constants.
        self.sizes_in_graph = False

    def spatial_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        return [(height // s, width // s) for s in self.level_strides]

    def set_image_size(self, height: int, width: int) -> None:
        """Precompute anchors and the valid mask for this input size."""
        self.anchor_shapes = self.spatial_shapes(height, width)
        self.anchors, self.valid_mask = generate_anchors(self.anchor_shapes, self.anchor_grid_size, self.anchor_eps)

    def cell_anchors(self, shapes: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchor logits [1, N, 4] and valid mask [1, N, 1] for the levels' ``shapes``."""
        # Compare shapes, not cell counts: a transposed input (W x H) has the same count but other anchors.
        if not self.sizes_in_graph and shapes == self.anchor_shapes:
            return self.anchors, self.valid_mask
        anchors, valid = generate_anchors(shapes, self.anchor_grid_size, self.anchor_eps)
        return anchors.to(device), valid.to(device)


def topk_lower_index_first(values: torch.Tensor, k: int, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """torch.topk with equal values ordered as ONNX TopK orders them: the lower index first.

    torch.topk leaves the order of exact ties unspecified (on CPU it depends on the input's size: with ties
    planted across the boundary it keeps another subset than ONNX Runtime), and exact ties happen: cells outside
    the valid anchor band all see the same zeroed memory, cells of a perfectly flat region the same features.
    In eager mode a stable descending sort states the ONNX rule exactly; traced for export this is a plain TopK,
    whose rule it is, so the graph keeps its TopK. (Scores equal only up to float noise cannot be ordered alike
    by any rule; verification proves those choices instead, verify/selection.py.)
    """
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return torch.topk(values, k, dim=dim)
    ordered, index = torch.sort(values, dim=dim, descending=True, stable=True)
    return ordered.narrow(dim, 0, k), index.narrow(dim, 0, k)


def select_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices [B, k] of the cells whose best class logit is highest, ties lower index first (ONNX TopK)."""
    return topk_lower_index_first(scores.max(-1).values, k, dim=1)[1]


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[b, index[b, i], :] for every b, i."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def select_queries(output_memory: torch.Tensor, enc_logits: torch.Tensor, anchors: torch.Tensor, k: int,
                   box_head: torch.nn.Module, observer: SelectionObserver | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Query selection, shared by RT-DETRv2 and D-FINE: the top-``k`` cells (``observer`` may choose others, see
    SelectionObserver) give the decoder its targets [B, k, D] and reference boxes [B, k, 4] in logit space. The
    box head is row-wise, so running it on the k selected rows equals selecting from all rows."""
    topk = select_topk(enc_logits, k)
    if observer is not None:
        topk = observer(enc_logits.max(-1).values, topk)
    targets = gather_rows(output_memory, topk)
    return targets, box_head(targets) + gather_rows(anchors.expand(output_memory.shape[0], -1, -1), topk)
