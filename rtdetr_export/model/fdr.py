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


def top_values(x: torch.Tensor, k: int) -> torch.Tensor:
    """``x.topk(k, dim=-1).values`` for ``x`` [..., n] >= 0 (k <= n), with Max and Min only: no TopK, Sort, ArgMax
    or comparison op, none of which every edge converter takes (pnnx crashes on TopK, NPUs reject it, ncnn has no
    comparison layer), while elementwise Max/Min are everywhere.

    Exactly the values topk returns, ties included: a selection network moves values, never computes them (max and
    min each return one of their inputs, and a compare-exchange keeps the pair's multiset), and only values are
    used, so it does not matter which of equal elements ends up where. The network: every element is a sorted list
    of length 1; the lists of the two halves of the last axis are merged pairwise, keeping the best ``k``, until one
    list is left (log2(n) rounds). A merge of sorted lists a and b keeping K: c_i = max(a_i, b_(K+1-i)) holds the
    K best of both as a bitonic sequence, which a bitonic sorter orders (Batcher). The last axis is first padded with
    zeros to a power of two: a zero never outranks an input (inputs are >= 0; a zero that ties one changes no value).
    For k = 4 over D-FINE's 33 bins: 6 rounds, 58 Max/Min ops on at most [..., 32] (the graph's size, not its cost).
    Every tensor keeps ``x``'s rank, so a rank-4 graph (ncnn) stays rank 4.
    """
    n = int(x.shape[-1])  # the bins: a constant of the model, also while tracing
    if not 1 <= k <= n:
        raise ValueError(f"top_values: k={k} outside 1..{n}")
    keep = 1 << (k - 1).bit_length()  # the lists grow to a power of two >= k; cut to k at the end
    width = 1 << (n - 1).bit_length()
    lists = [torch.nn.functional.pad(x, (0, width - n)) if width > n else x]  # one list of length 1 per column
    while lists[0].shape[-1] > 1:
        half = int(lists[0].shape[-1]) // 2
        first, second = [s[..., :half] for s in lists], [s[..., half:] for s in lists]
        lists = _merge(first, second, min(2 * len(lists), keep))
    return torch.cat(lists[:k], dim=-1)


def _merge(a: list[torch.Tensor], b: list[torch.Tensor], keep: int) -> list[torch.Tensor]:
    """The ``keep`` best (a power of two <= len(a) + len(b)), sorted, of the sorted (best first) lists a and b."""
    # c_i = max(a_i, b_(keep+1-i)), an absent element (past a list's end) losing to anything: a bitonic sequence.
    bitonic = []
    for i in range(keep):
        j = keep - 1 - i
        pair = [t for t in (a[i] if i < len(a) else None, b[j] if j < len(b) else None) if t is not None]
        bitonic.append(torch.maximum(*pair) if len(pair) == 2 else pair[0])
    return _bitonic_sort(bitonic)


def _bitonic_sort(seq: list[torch.Tensor]) -> list[torch.Tensor]:
    """A bitonic sequence (power-of-two length) sorted best first by half-cleaners: compare-exchange i and
    i + len/2, then sort each half the same way."""
    if len(seq) == 1:
        return seq
    half = len(seq) // 2
    high = [torch.maximum(seq[i], seq[i + half]) for i in range(half)]
    low = [torch.minimum(seq[i], seq[i + half]) for i in range(half)]
    return _bitonic_sort(high) + _bitonic_sort(low)


class LQE(nn.Module):
    """Localization-quality estimation: class logits + MLP(top-k bin probabilities of each edge and their mean)."""

    def __init__(self, top_prob_values: int, max_num_bins: int, hidden_dim: int, num_layers: int, act: str = "relu"):
        super().__init__()
        self.top_prob_values = top_prob_values
        self.bins = max_num_bins + 1
        self.reg_conf = MLP(4 * (top_prob_values + 1), hidden_dim, 1, num_layers, act)
        # Write the top-k with Max/Min (``top_values``) instead of TopK: the same numbers exactly. Set only through
        # ``RTDETRv2.set_topk_free_heads`` by the split export, whose graph 2 must hold no TopK; the single file
        # keeps TopK, which every runtime that takes its query selection's TopK takes too.
        self.topk_free = False

    def forward(self, scores: torch.Tensor, corner_logits: torch.Tensor) -> torch.Tensor:
        batch, queries, _ = corner_logits.shape
        probs = corner_logits.reshape(batch, queries, 4, self.bins).softmax(-1)
        # Sorted: the MLP reads them in rank order.
        top = (top_values(probs, self.top_prob_values) if self.topk_free else
               probs.topk(self.top_prob_values, dim=-1).values)
        stat = torch.cat([top, top.mean(dim=-1, keepdim=True)], dim=-1)
        return scores + self.reg_conf(stat.reshape(batch, queries, -1))
