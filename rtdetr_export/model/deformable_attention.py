"""Multi-scale deformable attention with per-level sampling points (RT-DETRv2).

Two samplers read values at the predicted locations:
- ``default``: bilinear ``grid_sample`` (zeros padding, ``align_corners=False``), the trained behaviour;
- ``discrete``: the nearest cell, ``clamp(floor(loc * size + 0.5), 0, size - 1)`` per axis, read with a gather,
  so the exported graph needs no GridSample. x is clamped by the map's width and y by its height; the
  original code clamps both by the height, which only differs on rectangular maps.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def sample_bilinear(value: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """Bilinear read of value [N, C, H, W] at normalised loc [N, Q, P, 2] (x, y in [0, 1]) -> [N, C, Q, P]."""
    return nn.functional.grid_sample(value, 2 * loc - 1, mode="bilinear", padding_mode="zeros",
                                     align_corners=False)


def sample_discrete(value: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """Nearest-cell read of value [N, C, H, W] at loc [N, Q, P, 2] -> [N, C, Q, P], using only a gather."""
    n, c, h, w = value.shape
    _, q, p, _ = loc.shape
    x = torch.floor(loc[..., 0] * w + 0.5).clamp(0, w - 1)
    y = torch.floor(loc[..., 1] * h + 0.5).clamp(0, h - 1)
    index = (y * w + x).to(torch.int64).reshape(n, 1, q * p).expand(n, c, q * p)
    return value.reshape(n, c, h * w).gather(2, index).reshape(n, c, q, p)


SAMPLERS = {"default": sample_bilinear, "discrete": sample_discrete}


class MSDeformableAttention(nn.Module):
    """Each query attends to a few sampled points per level around its reference box."""

    def __init__(self, dim: int, num_heads: int, num_points: tuple[int, ...], method: str, offset_scale: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.num_points = tuple(num_points)
        self.offset_scale = offset_scale
        self.method = method
        total = num_heads * sum(num_points)
        self.sampling_offsets = nn.Linear(dim, total * 2)
        self.attention_weights = nn.Linear(dim, total)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        # Offsets are scaled by 1/n_points of their level so levels with more points spread them finer.
        scale = [1.0 / n for n in num_points for _ in range(n)]
        self.register_buffer("num_points_scale", torch.tensor(scale, dtype=torch.float32), persistent=False)
        # Verification hook: sees every level's sampling locations (see verify/margins.py). None in exports.
        self.location_observer: Callable[[torch.Tensor, int, int], None] | None = None

    def forward(self, query: torch.Tensor, reference_boxes: torch.Tensor, memory: torch.Tensor,
                spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """query [B, Q, C]; reference_boxes [B, Q, 4] cxcywh in [0, 1]; memory [B, sum(H*W), C]."""
        batch, num_queries, _ = query.shape
        heads, head_dim, points = self.num_heads, self.head_dim, sum(self.num_points)

        value = self.value_proj(memory)
        offsets = self.sampling_offsets(query).reshape(batch, num_queries, heads, points, 2)
        weights = self.attention_weights(query).reshape(batch, num_queries, heads, points).softmax(-1)

        ref = reference_boxes[:, :, None, None, :]
        scale = self.num_points_scale.to(query.dtype)[:, None]
        loc = ref[..., :2] + offsets * scale * ref[..., 2:] * self.offset_scale  # [B, Q, heads, points, 2]
        loc = loc.permute(0, 2, 1, 3, 4).reshape(batch * heads, num_queries, points, 2)

        sampler = SAMPLERS[self.method]
        sampled = []
        level_values = value.split([h * w for h, w in spatial_shapes], dim=1)
        level_locs = loc.split(list(self.num_points), dim=2)
        for (h, w), level_value, level_loc in zip(spatial_shapes, level_values, level_locs):
            if self.location_observer is not None:
                self.location_observer(level_loc, h, w)
            # [B, H*W, C] -> [B*heads, head_dim, H, W]
            level_value = level_value.reshape(batch, h * w, heads, head_dim).permute(0, 2, 3, 1)
            level_value = level_value.reshape(batch * heads, head_dim, h, w)
            sampled.append(sampler(level_value, level_loc))

        weights = weights.permute(0, 2, 1, 3).reshape(batch * heads, 1, num_queries, points)
        out = (torch.cat(sampled, dim=-1) * weights).sum(-1)  # [B*heads, head_dim, Q]
        out = out.reshape(batch, heads * head_dim, num_queries).transpose(1, 2)
        return self.output_proj(out)
