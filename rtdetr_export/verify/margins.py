"""Rounding margins of the discrete sampler, and the counterfactual run that proves a flip.

The discrete sampler reads cell ``clamp(floor(loc * size + 0.5), 0, size - 1)``. When ``loc * size + 0.5``
lies within float noise of an integer, two correct float32 runtimes may pick neighbouring cells and the
query's outputs then differ by far more than float noise. Two pieces of evidence separate such a flip from
a bug: the reference's own run put one of the query's sampling points within ``FLIP_MARGIN`` cells of a
boundary that changes the chosen cell (``margin``), and the reference, re-run with exactly those points
rounded the other way (``flip``), reproduces the candidate's outputs within the ordinary tolerance.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch

from rtdetr_export.model import RTDETRv2

# In cells. Every flip we measured (r18vd and r50vd, ONNX Runtime vs PyTorch) sat below 1.5e-5 cells; 1e-4
# leaves headroom, and still only ~2% of queries have a point that close.
FLIP_MARGIN = 1e-4


def _axis_boundaries(loc: torch.Tensor, height: int, width: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Per axis (x, y): t = loc * size + 0.5, the nearest boundary that changes the clamped cell, and size.

    Only integers 1..size-1 of t change the clamped index; beyond them both neighbours clamp to the edge.
    """
    out = []
    for axis, size in ((0, width), (1, height)):
        t = loc[..., axis].double() * size + 0.5
        out.append((t, t.round().clamp(1, max(size - 1, 1)), size))
    return out


def point_margins(loc: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """loc [..., 2] -> [...]: distance in cells of each point to the nearest boundary that matters."""
    distances = []
    for t, boundary, size in _axis_boundaries(loc, height, width):
        distance = (t - boundary).abs()
        distances.append(torch.full_like(distance, float("inf")) if size == 1 else distance)
    return torch.minimum(*distances)


def flip_near_boundaries(loc: torch.Tensor, height: int, width: int, limits: torch.Tensor) -> torch.Tensor:
    """loc [B, Q, heads, points, 2] with every coordinate that lies within ``limits`` [B, Q] cells of a boundary
    (negative: none of that query's) moved a quarter cell across it, so it reads the neighbouring cell."""
    coords, limits = [], limits.to(loc.device, torch.float64)
    for axis, (t, boundary, size) in enumerate(_axis_boundaries(loc, height, width)):
        near = ((t - boundary).abs() <= limits[:, :, None, None]) & (size > 1)
        # The side the sampler actually took is decided in the model's own float arithmetic, which may round
        # t onto the boundary where float64 sees it just below.
        taken = (loc[..., axis] * size + 0.5).double() >= boundary
        across = torch.where(taken, boundary - 0.25, boundary + 0.25)
        coords.append(torch.where(near, (across - 0.5) / size, loc[..., axis].double()))
    return torch.stack(coords, -1).to(loc.dtype)


class RoundingMargins:
    """While active: the smallest per-query margin over every discrete sampling step of a forward, and
    optionally the flipped rounding of the points within ``flip`` [B, Q] cells of a boundary."""

    def __init__(self, flip: torch.Tensor | None = None):
        self.flip = flip
        self.margin: torch.Tensor | None = None  # [B, Q]

    def __call__(self, loc: torch.Tensor, height: int, width: int) -> torch.Tensor:
        per_query = point_margins(loc.detach(), height, width).amin((2, 3))
        self.margin = per_query if self.margin is None else torch.minimum(self.margin, per_query)
        return loc if self.flip is None else flip_near_boundaries(loc, height, width, self.flip)

    def as_numpy(self) -> np.ndarray:
        return self.margin.cpu().numpy() if self.margin is not None else np.zeros((0, 0))


@contextlib.contextmanager
def record_rounding_margins(model: RTDETRv2, flip: np.ndarray | None = None) -> Iterator[RoundingMargins | None]:
    """Observe ``model``'s sampling (``RTDETRv2.observe_sampling``) with a RoundingMargins while the block runs;
    yields None for a model whose sampler does not round (only ``discrete`` does).

    ``flip`` [B, Q]: per query, points within this many cells of a boundary are rounded the other way (the
    counterfactual run; negative: none).
    """
    if model.config.decoder_method != "discrete":
        yield None
        return
    recorder = RoundingMargins(None if flip is None else torch.as_tensor(flip, dtype=torch.float64))
    with model.observe_sampling(recorder):
        yield recorder
