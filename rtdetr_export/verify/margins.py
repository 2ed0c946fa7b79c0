"""How close the discrete sampler's rounding came to a cell boundary, per query: the evidence for flips.

The discrete sampler reads cell ``clamp(floor(loc * size + 0.5), 0, size - 1)``. When ``loc * size + 0.5``
lies within float noise of an integer, two correct float32 runtimes may pick neighbouring cells and the
query's outputs then differ by far more than float noise. The comparator excuses such a difference only for
queries whose reference run put a sampling point within ``FLIP_MARGIN`` cells of a boundary that changes
the chosen cell.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
from torch import nn

from rtdetr_export.model.deformable_attention import MSDeformableAttention

# In cells. Every flip we measured (r18vd, ONNX Runtime vs PyTorch, 20 images) sat below 5e-6 cells; 1e-4 is
# 20x that, and still only ~2% of queries have a point that close, so a plain numerical error is not excused.
FLIP_MARGIN = 1e-4


def level_margins(loc: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """loc [B*heads, Q, P, 2] -> [B*heads, Q]: distance (cells) of the nearest point to a boundary that matters.

    Only integers 1..size-1 of ``loc * size + 0.5`` change the clamped index; beyond them both neighbours
    clamp to the same edge cell.
    """
    out = []
    for axis, size in ((0, width), (1, height)):
        t = loc[..., axis].double() * size + 0.5
        boundary = t.round().clamp(1, max(size - 1, 1))
        distance = (t - boundary).abs()
        if size == 1:
            distance = torch.full_like(distance, float("inf"))
        out.append(distance)
    return torch.minimum(*out).amin(-1)


class RoundingMargins:
    """Collects, while active, the smallest per-query margin over every discrete sampling step of a forward."""

    def __init__(self, num_heads: int):
        self.num_heads = num_heads
        self.margin: torch.Tensor | None = None  # [B, Q]

    def observe(self, loc: torch.Tensor, height: int, width: int) -> None:
        per_head = level_margins(loc.detach(), height, width)
        per_query = per_head.reshape(-1, self.num_heads, per_head.shape[-1]).amin(1)
        self.margin = per_query if self.margin is None else torch.minimum(self.margin, per_query)

    def reset(self) -> None:
        self.margin = None

    def as_numpy(self) -> np.ndarray:
        return self.margin.cpu().numpy() if self.margin is not None else np.zeros((0, 0))


@contextlib.contextmanager
def record_rounding_margins(model: nn.Module) -> Iterator[RoundingMargins | None]:
    """Attach a RoundingMargins to every discrete deformable-attention module; yields None if there is none."""
    modules = [m for m in model.modules() if isinstance(m, MSDeformableAttention) and m.method == "discrete"]
    if not modules:
        yield None
        return
    recorder = RoundingMargins(modules[0].num_heads)
    for module in modules:
        module.location_observer = recorder.observe
    try:
        yield recorder
    finally:
        for module in modules:
            module.location_observer = None
