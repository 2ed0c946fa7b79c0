"""Multi-scale deformable attention with per-level sampling points (RT-DETRv2).

Three samplers (``model/sampler.py``, one ``Sampler`` value) read values at the predicted locations, each a
method of ``MSDeformableAttention``:
- ``default``: bilinear, as ``grid_sample`` (zeros padding, ``align_corners=False``), the trained behaviour. It can
  be written two ways with the same math: ``gridsample-bilinear`` (the op itself, ``attend_gridsample``) or
  ``gather-bilinear`` (the four corner cells read with a Gather and weighted with arithmetic; corners outside the
  map weigh zero; ``attend_gather_bilinear``), for runtimes that lack or miscompute GridSample.
  ``RTDETRv2.set_sampler`` picks one; exports choose it per file;
- ``discrete`` (``gather-nearest``, ``attend_nearest``): the nearest cell, ``clamp(floor(loc * size + 0.5), 0, size - 1)`` per axis, read with a gather,
  so the exported graph needs no GridSample. x is clamped by the map's width and y by its height; the
  original code clamps both by the height, which only differs on rectangular maps.

With ``discrete`` the value projection runs after sampling: ``value_proj`` is linear and the sampler reads
whole cells, so projecting the attention-weighted sum of the sampled encoder cells equals summing the projected
cells (the softmax weights of a head sum to 1, so the bias passes through unchanged). Per query that projects
heads x points rows instead of every one of the H*W cells (at 640, ~25x fewer multiply-adds in the decoder's
cross-attention), and the graph reads memory rows with a plain Gather, without transposing the value map.

The gather-bilinear sampler projects first, as GridSample's path does. Projecting after sampling would be exact too
(the bias then scales by the summed in-bounds corner weights), but it gathers four full-width memory rows per point
and head (4 x 8 x 256 floats per point at r18vd) where projecting first gathers head_dim-wide rows of the head's
own values: measured on ONNX Runtime CPU, r18vd 640, paired, project-after ran at 0.92-0.98x of GridSample's speed
and project-first at 0.996-1.009x (docs/model.md, "Reading the sampling points").
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from rtdetr_export.model.sampler import Sampler


def sample_bilinear(value: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """Bilinear read of value [N, C, H, W] at normalised loc [N, Q, P, 2] (x, y in [0, 1]) -> [N, C, Q, P]."""
    return nn.functional.grid_sample(value, 2 * loc - 1, mode="bilinear", padding_mode="zeros",
                                     align_corners=False)


def discrete_cell_index(loc: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Flat row-major cell index (int64) of the nearest cell to each normalised loc [..., 2] (x, y)."""
    return nearest_cell(loc[..., 0], loc[..., 1], height, width)


def nearest_cell(x: torch.Tensor, y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``discrete_cell_index`` on x and y planes of the same shape."""
    x = torch.floor(x * width + 0.5).clamp(0, width - 1).to(torch.int64)
    y = torch.floor(y * height + 0.5).clamp(0, height - 1).to(torch.int64)
    # Row-major index in integers: as a float, y * W + x exceeds FP16/BF16's exact integers (2048 / 256) at
    # 640 px (up to 6399), and runtimes that lower float ops to those types would read the wrong cells.
    return y * width + x


def sample_discrete(value: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """Nearest-cell read of value [N, C, H, W] at loc [N, Q, P, 2] -> [N, C, Q, P], using only a gather."""
    n, c, h, w = value.shape
    _, q, p, _ = loc.shape
    index = discrete_cell_index(loc, h, w).reshape(n, 1, q * p).expand(n, c, q * p)
    return value.reshape(n, c, h * w).gather(2, index).reshape(n, c, q, p)


def bilinear_corners(loc: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The four cells ``grid_sample(bilinear, zeros, align_corners=False)`` reads at loc [..., 2] (x, y in [0, 1]):
    flat row-major index (int64) [..., 4] clamped into the map, and weight [..., 4], zero for corners outside it.

    Corner order: (x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1).
    """
    return corner_cells(loc[..., 0], loc[..., 1], height, width)


def corner_cells(x: torch.Tensor, y: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``bilinear_corners`` on x and y planes of the same shape."""
    # Pixel coordinate of align_corners=False; clamping to [-2, size + 1] changes no weight (every corner beyond
    # it is outside the map either way) and keeps the int64 cast finite for wild offsets.
    x = (x * width - 0.5).clamp(-2.0, width + 1.0)
    y = (y * height - 0.5).clamp(-2.0, height + 1.0)
    x_floor, y_floor = torch.floor(x), torch.floor(y)
    fx, fy = x - x_floor, y - y_floor
    # Indices are integers from here on: FP16 cannot hold a flat cell index above 2048 exactly.
    x0, y0 = x_floor.to(torch.int64), y_floor.to(torch.int64)
    xs = torch.stack([x0, x0 + 1, x0, x0 + 1], dim=-1)
    ys = torch.stack([y0, y0, y0 + 1, y0 + 1], dim=-1)
    weight = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], dim=-1)
    x_in, y_in = xs.clamp(0, width - 1), ys.clamp(0, height - 1)
    # "Inside" as "clamping changed nothing", weighted by multiplication: Clip, Equal, Cast and Mul only, ops
    # every target of the portability table takes (no GreaterOrEqual, And or Not, which NPU lists lack).
    weight = weight * (x_in == xs).to(weight.dtype) * (y_in == ys).to(weight.dtype)
    return y_in * width + x_in, weight


def split_levels(memory: torch.Tensor, spatial_shapes: list[tuple[int, int]]) -> list[torch.Tensor]:
    """memory [B, sum(H*W), C] -> one [B, H*W, C] block per level.

    ``split`` needs Python ints, so a dynamic-size export (traced sizes) slices instead; a static export keeps its
    ``split`` and so its graph."""
    if all(isinstance(side, int) for shape in spatial_shapes for side in shape):
        return list(memory.split([h * w for h, w in spatial_shapes], dim=1))
    blocks, start = [], 0
    for h, w in spatial_shapes:
        blocks.append(memory[:, start:start + h * w])
        start = start + h * w
    return blocks


LocationObserver = Callable[[torch.Tensor, int, int], torch.Tensor]


class OffsetPlanes(nn.Linear):
    """``sampling_offsets``: stored as trained, rows in (head, point, x | y) order; returns the x offsets of all
    points, then the y offsets ([..., 2 * heads * points] read as [..., 2, heads * points]).

    Reading the rows in that order is a permutation of the weight, which an export folds into the initializer, so
    the graph builds the sampling locations on x and y planes with no Transpose: broadcasting a box over a
    trailing axis of 2 makes runtimes step two elements at a time (ONNX Runtime CPU: ~0.75 ms for each of the
    three ops per decoder layer at r18vd, ~0.04 ms on planes), and ONNX Runtime's transpose optimizer moves an
    explicit Transpose back through those ops.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.reshape(-1, 2, self.in_features).transpose(0, 1).reshape(self.weight.shape)
        return nn.functional.linear(x, weight, self.bias.reshape(-1, 2).t().reshape(-1))


class MSDeformableAttention(nn.Module):
    """Each query attends to a few sampled points per level around its reference box."""

    def __init__(self, dim: int, num_heads: int, num_points: tuple[int, ...], sampler: Sampler, offset_scale: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.num_points = tuple(num_points)
        self.offset_scale = offset_scale
        # Each sampler is one method below that reads the memory its way (``attend`` picks it).
        self.sampler = Sampler(sampler)
        total = num_heads * sum(num_points)
        self.sampling_offsets = OffsetPlanes(dim, total * 2)
        self.attention_weights = nn.Linear(dim, total)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        # Offsets are scaled by 1/n_points of their level so levels with more points spread them finer.
        scale = [1.0 / n for n in num_points for _ in range(n)]
        self.register_buffer("num_points_scale", torch.tensor(scale, dtype=torch.float32), persistent=False)
        # The one seam into the forward pass, set only through ``RTDETRv2.observe_sampling`` (None otherwise,
        # and always in exports): sees each level's locations [B, Q, heads, points, 2] and returns the ones to
        # read. Verification measures the discrete sampler's rounding margins and re-rounds flips with it.
        self.location_observer: LocationObserver | None = None
        # Write the gridsample-bilinear layer with tensors of at most 4 dimensions (``forward_rank4``); set only
        # through ``RTDETRv2.set_rank4_layout`` by exports for runtimes that need it (the split export: ncnn).
        self.rank4_layout = False

    def forward(self, query: torch.Tensor, reference_boxes: torch.Tensor, memory: torch.Tensor,
                spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """query [B, Q, C]; reference_boxes [B, Q, 4] cxcywh in [0, 1]; memory [B, sum(H*W), C]."""
        # An observer sees [B, Q, heads, points, 2] locations, which the rank-4 layout never builds; the two
        # layouts compute the same numbers (tests/model/test_rank4_layout.py), so observing takes this one.
        rank4 = self.rank4_layout and self.sampler is Sampler.GRIDSAMPLE_BILINEAR
        if rank4 and self.location_observer is None:
            return self.output_proj(self.forward_rank4(query, reference_boxes, memory, spatial_shapes))
        batch, num_queries, _ = query.shape
        heads, points = self.num_heads, sum(self.num_points)

        offsets = self.sampling_offsets(query).reshape(batch, num_queries, 2, heads * points)
        weights = self.attention_weights(query).reshape(batch, num_queries, heads, points).softmax(-1)

        ref = reference_boxes.reshape(batch, num_queries, 2, 2, 1)  # [B, Q, centre | size, x | y, 1]
        scale = self.num_points_scale.to(query.dtype).repeat(heads)
        loc = ref[:, :, 0] + offsets * scale * ref[:, :, 1] * self.offset_scale
        loc = loc.reshape(batch, num_queries, 2, heads, points)  # x and y planes
        return self.output_proj(self.attend(memory, loc, weights, spatial_shapes))

    def attend(self, memory: torch.Tensor, loc: torch.Tensor, weights: torch.Tensor,
               spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """Read, weight and sum the sampled values with this layer's sampler -> [B, Q, C]."""
        if self.sampler is Sampler.GATHER_NEAREST:
            return self.attend_nearest(memory, loc, weights, spatial_shapes)
        if self.sampler is Sampler.GATHER_BILINEAR:
            return self.attend_gather_bilinear(memory, loc, weights, spatial_shapes)
        return self.attend_gridsample(memory, loc, weights, spatial_shapes)

    def set_sampler(self, sampler: Sampler) -> None:
        """Write bilinear reading with another op (the same math, so only exports change it); the nearest-cell
        sampler computes something else and is chosen when the model is built (``decoder_method``)."""
        sampler = Sampler(sampler)
        if sampler.method != self.sampler.method:
            raise ValueError(f"a {self.sampler.method} layer cannot read with {sampler} (build the model with "
                             f"decoder_method={sampler.method!r})")
        self.sampler = sampler

    def observe(self, level_loc: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The x and y planes [B, Q, heads, points] to read on one level (``level_loc`` [B, Q, 2, heads, points]):
        as predicted, unless an observer is attached (it sees and returns [B, Q, heads, points, 2])."""
        if self.location_observer is not None:
            seen = self.location_observer(level_loc.permute(0, 1, 3, 4, 2), height, width)
            return seen[..., 0], seen[..., 1]
        return level_loc[:, :, 0], level_loc[:, :, 1]

    def attend_gridsample(self, memory: torch.Tensor, loc: torch.Tensor, weights: torch.Tensor,
                          spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """gridsample-bilinear: project every cell to values, grid-sample them per head and level, weight and
        sum -> [B, Q, C].

        ``loc`` [B, Q, 2, heads, points]: x and y planes of the sampling locations (all three samplers)."""
        batch, num_queries, _, heads, points = loc.shape
        head_dim = self.head_dim
        value = self.value_proj(memory)
        sampled = []
        level_values = split_levels(value, spatial_shapes)
        level_locs = loc.split(list(self.num_points), dim=4)
        for (h, w), level_value, level_loc in zip(spatial_shapes, level_values, level_locs):
            level_loc = torch.stack(self.observe(level_loc, h, w), dim=-1)  # grid_sample reads (x, y) pairs
            # [B, H*W, C] -> [B*heads, head_dim, H, W]; loc -> [B*heads, Q, points, 2]
            level_value = level_value.reshape(batch, h * w, heads, head_dim).permute(0, 2, 3, 1)
            level_value = level_value.reshape(batch * heads, head_dim, h, w)
            level_loc = level_loc.permute(0, 2, 1, 3, 4).reshape(batch * heads, num_queries, -1, 2)
            sampled.append(sample_bilinear(level_value, level_loc))

        weights = weights.permute(0, 2, 1, 3).reshape(batch * heads, 1, num_queries, points)
        out = (torch.cat(sampled, dim=-1) * weights).sum(-1)  # [B*heads, head_dim, Q]
        return out.reshape(batch, heads * head_dim, num_queries).transpose(1, 2)

    def attend_nearest(self, memory: torch.Tensor, loc: torch.Tensor, weights: torch.Tensor,
                       spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """gather-nearest (``discrete``): gather the nearest memory rows, weight and sum them per head, then
        project -> [B, Q, C]."""
        batch, num_queries, _, heads, points = loc.shape
        cells, channels = memory.shape[1], memory.shape[2]
        index, start = [], 0
        for (h, w), level_loc in zip(spatial_shapes, loc.split(list(self.num_points), dim=4)):
            index.append(nearest_cell(*self.observe(level_loc, h, w), h, w) + start)
            start += h * w
        # Rows of all images in one flat table: heads lead so the per-head sums come out ready to project.
        index = torch.cat(index, dim=-1).transpose(1, 2)  # [B, heads, Q, points]
        index = index + (torch.arange(batch, device=memory.device) * cells).reshape(batch, 1, 1, 1)
        rows = memory.reshape(batch * cells, channels)[index.reshape(-1)]
        rows = rows.reshape(batch, heads, num_queries, points, channels)
        summed = (weights.transpose(1, 2).unsqueeze(-2) @ rows).squeeze(-2)  # [B, heads, Q, C]
        value_weight = self.value_proj.weight.reshape(heads, self.head_dim, channels).transpose(1, 2)
        out = (summed @ value_weight).transpose(1, 2)  # [B, Q, heads, head_dim]
        return out.reshape(batch, num_queries, heads * self.head_dim) + self.value_proj.bias

    def attend_gather_bilinear(self, memory: torch.Tensor, loc: torch.Tensor,
                               weights: torch.Tensor, spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """gather-bilinear, ``default`` without GridSample: project every cell to values (as GridSample's path
        does), gather each point's four corner rows of its head, weight them by attention x corner weight and
        sum -> [B, Q, C].

        A corner outside the map weighs zero, value bias included: exactly what zero padding reads.
        """
        batch, num_queries, _, heads, points = loc.shape
        cells = memory.shape[1]
        value = self.value_proj(memory)  # [B, cells, heads * head_dim]
        index, corner_weight, start = [], [], 0
        for (h, w), level_loc in zip(spatial_shapes, loc.split(list(self.num_points), dim=4)):
            level_index, level_weight = corner_cells(*self.observe(level_loc, h, w), h, w)
            index.append(level_index + start)
            corner_weight.append(level_weight)
            start += h * w
        index = torch.cat(index, dim=3).flatten(3)  # [B, Q, heads, points * 4]
        weight = (torch.cat(corner_weight, dim=3) * weights.unsqueeze(-1)).flatten(3)
        # One table of head_dim-wide rows, (image, cell, head) row-major: the [B, cells, C] values as they lie.
        batch_offset = (torch.arange(batch, device=memory.device) * cells).reshape(batch, 1, 1, 1)
        head = torch.arange(heads, device=memory.device).reshape(1, 1, heads, 1)
        rows = value.reshape(batch * cells * heads, self.head_dim)[((index + batch_offset) * heads + head).reshape(-1)]
        rows = rows.reshape(batch, num_queries, heads, points * 4, self.head_dim)
        out = (weight.unsqueeze(-2) @ rows).squeeze(-2)  # [B, Q, heads, head_dim]
        return out.reshape(batch, num_queries, heads * self.head_dim)

    def forward_rank4(self, query: torch.Tensor, reference_boxes: torch.Tensor, memory: torch.Tensor,
                      spatial_shapes: list[tuple[int, int]]) -> torch.Tensor:
        """gridsample-bilinear with no tensor above 4 dimensions and the batch always leading -> [B, Q, C] (before
        ``output_proj``), the numbers of ``forward`` + ``attend_gridsample``.

        ncnn (through pnnx) holds at most 4 dimensions and treats the first as the batch: ``forward`` views the
        locations as [B, Q, 2, heads, points] and ``attend_gridsample`` folds the heads into the batch
        ([B*heads, head_dim, Q, points]), and pnnx leaves the first unconverted while ncnn cannot run the second
        (the weighted sum's Reshape extracts an empty Mat). Here the x and y planes are slices of the offsets, and
        each head samples its own channels with its own GridSample and sums its points itself: the same
        elementwise products and the same sum over the points, in another grouping (one op per head and level).
        """
        batch, num_queries, _ = query.shape
        heads, points, head_dim = self.num_heads, sum(self.num_points), self.head_dim
        planes = heads * points
        offsets = self.sampling_offsets(query)  # [B, Q, 2 * heads * points]: the x plane, then the y plane
        weights = self.attention_weights(query).reshape(batch, num_queries, heads, points).softmax(-1)
        scale = self.num_points_scale.to(query.dtype).repeat(heads)
        xy = []
        for axis in range(2):  # forward's centre + offset * scale * size * offset_scale, one plane at a time
            centre, size = reference_boxes[..., axis:axis + 1], reference_boxes[..., 2 + axis:3 + axis]
            plane = centre + offsets[..., axis * planes:(axis + 1) * planes] * scale * size * self.offset_scale
            xy.append(plane.reshape(batch, num_queries, heads, points).split(list(self.num_points), dim=3))
        value = self.value_proj(memory)
        level_values = split_levels(value, spatial_shapes)
        per_head = []
        for head in range(heads):
            channels = slice(head * head_dim, (head + 1) * head_dim)
            sampled = []
            for level, ((h, w), level_value) in enumerate(zip(spatial_shapes, level_values)):
                grid = torch.stack([xy[0][level][:, :, head], xy[1][level][:, :, head]], dim=-1)  # [B, Q, P_l, 2]
                head_value = level_value[:, :, channels].transpose(1, 2).reshape(batch, head_dim, h, w)
                sampled.append(sample_bilinear(head_value, grid))  # [B, head_dim, Q, P_l]
            # The weighted sum over the points as a batched MatMul: [B, Q, 1, points] x [B, Q, points, head_dim]
            # (pnnx writes a ReduceSum over the last of 4 dimensions as an ncnn Reduction with no axes: no sum).
            rows = torch.cat(sampled, dim=3).permute(0, 2, 3, 1)
            per_head.append((weights[:, :, head].unsqueeze(2) @ rows).reshape(batch, num_queries, head_dim))
        return torch.cat(per_head, dim=2)
