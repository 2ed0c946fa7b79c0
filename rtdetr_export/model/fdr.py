"""Fine-grained distribution refinement (FDR) and localization-quality estimation (LQE), D-FINE's box head.

RT-DETRv2 regresses a box delta in logit space per decoder layer. D-FINE instead predicts, for each of the four
edges, a distribution over ``max_num_bins + 1`` bins; the edge offset is the distribution's expectation under a
non-uniform weighting function W(n) (fine steps near zero, coarse at the ends), and every layer adds its logits to
the previous layer's, refining one distribution rather than the box. The offsets move the edges of the first
layer's box, in units of that box's size divided by ``reg_scale``. LQE adds to each class logit a score computed
from how peaked the four distributions are (their top probabilities and the mean of those).
"""

from __future__ import annotations

import torch
from torch import nn

from rtdetr_export.model.layers import MLP


def weighting_function(max_num_bins: int, up: torch.Tensor, reg_scale: torch.Tensor) -> torch.Tensor:
    """W(n) for n = 0 .. max_num_bins: [-2a, -(s^(k-1) - 1), .., -(s - 1), 0, s - 1, .., s^(k-1) - 1, 2a] with
    a = |up| * |reg_scale|, s = (a + 1)^(2 / (max_num_bins - 2)) and k = max_num_bins / 2, as a [max_num_bins + 1]
    tensor. ``up`` and ``reg_scale`` are the checkpoint's one-element tensors; an export folds the result."""
    bound = up.abs() * reg_scale.abs()
    step = (bound + 1) ** (2.0 / (max_num_bins - 2))
    powers = torch.arange(1, max_num_bins // 2, dtype=up.dtype, device=up.device)
    right = step ** powers - 1  # s - 1, .., s^(k-1) - 1: ascending
    return torch.cat([-2 * bound, -right.flip(0), torch.zeros_like(bound), right, 2 * bound])


def distribution_offsets(corner_logits: torch.Tensor, project: torch.Tensor) -> torch.Tensor:
    """Expected edge offsets [B, Q, 4] of the per-edge bin logits [B, Q, 4 * (bins + 1)] under W(n) ``project``."""
    batch, queries, _ = corner_logits.shape
    probs = corner_logits.reshape(batch, queries, 4, -1).softmax(-1)
    return probs @ project


def edges_to_box(anchor: torch.Tensor, offsets: torch.Tensor, reg_scale: torch.Tensor) -> torch.Tensor:
    """Box [B, Q, 4] cxcywh whose edges lie ``0.5 * reg_scale + offset`` anchor-size units from the anchor centre.

    ``offsets`` [B, Q, 4] are (left, top, right, bottom); with zero offsets the result is the anchor itself.
    """
    scale = reg_scale.abs()
    centre, size = anchor[..., :2], anchor[..., 2:]
    unit = size / scale
    top_left = centre - (0.5 * scale + offsets[..., :2]) * unit
    bottom_right = centre + (0.5 * scale + offsets[..., 2:]) * unit
    return torch.cat([(top_left + bottom_right) / 2, bottom_right - top_left], dim=-1)


class LQE(nn.Module):
    """Localization-quality estimation: class logits + MLP(top-k bin probabilities of each edge and their mean)."""

    def __init__(self, top_prob_values: int, max_num_bins: int, hidden_dim: int, num_layers: int, act: str = "relu"):
        super().__init__()
        self.top_prob_values = top_prob_values
        self.bins = max_num_bins + 1
        self.reg_conf = MLP(4 * (top_prob_values + 1), hidden_dim, 1, num_layers, act)

    def forward(self, scores: torch.Tensor, corner_logits: torch.Tensor) -> torch.Tensor:
        batch, queries, _ = corner_logits.shape
        probs = corner_logits.reshape(batch, queries, 4, self.bins).softmax(-1)
        top = probs.topk(self.top_prob_values, dim=-1).values  # sorted: the MLP reads them in rank order
        stat = torch.cat([top, top.mean(dim=-1, keepdim=True)], dim=-1)
        return scores + self.reg_conf(stat.reshape(batch, queries, -1))
