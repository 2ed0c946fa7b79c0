"""The ``discrete`` sampler reads the cell clamp(floor(loc * size + 0.5), 0, size - 1) per axis.

It is checked against an independent formulation: ``grid_sample(mode='nearest', padding_mode='border',
align_corners=False)``. With align_corners=False grid_sample maps a normalised coordinate g to the pixel
coordinate p = ((g + 1) * size - 1) / 2, clips p to [0, size - 1] (border padding) and rounds it with
nearbyint (half to even). Feeding g = 2 * (loc + 0.5 / size) - 1 makes p = loc * size, so nearest rounding of p
equals floor(loc * size + 0.5) everywhere except exactly at half-integers, where nearbyint rounds to even;
locations within 1e-4 of such a boundary are dropped. The clip-then-round of border padding equals the
round-then-clamp of the discrete rule. Everything runs in float64, so the comparison is exact.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from rtdetr_export.model.deformable_attention import sample_bilinear, sample_discrete
from rtdetr_export.weights import load_model

BOUNDARY_MARGIN = 1e-4


def nearest_by_grid_sample(value: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    _, _, h, w = value.shape
    size = torch.tensor([w, h], dtype=loc.dtype)
    grid = 2 * (loc + 0.5 / size) - 1
    return F.grid_sample(value, grid, mode="nearest", padding_mode="border", align_corners=False)


def random_locations(n: int, q: int, p: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Locations in [-0.3, 1.3]^2 (so some fall outside the map), none near a rounding boundary."""
    g = torch.Generator().manual_seed(seed)
    loc = torch.rand(n, q, p, 2, generator=g, dtype=torch.float64) * 1.6 - 0.3
    scaled = loc * torch.tensor([w, h], dtype=torch.float64)
    near_half = ((scaled - scaled.floor()) - 0.5).abs() < BOUNDARY_MARGIN
    # Move a location off the boundary instead of dropping it, keeping the tensor shape.
    nudge = torch.where(near_half, 2 * BOUNDARY_MARGIN / torch.tensor([w, h], dtype=torch.float64), 0.0)
    return loc + nudge


@pytest.mark.parametrize("h, w", [(8, 8), (5, 9), (9, 5)], ids=["square-8x8", "wide-5x9", "tall-9x5"])
def test_discrete_sampling_equals_nearest_grid_sample_with_border_padding(h, w):
    n, c, q, p = 3, 4, 40, 6
    value = torch.randn(n, c, h, w, generator=torch.Generator().manual_seed(h * 10 + w), dtype=torch.float64)
    loc = random_locations(n, q, p, h, w, seed=h + w)
    outside = ((loc < 0) | (loc > 1)).any(-1)
    assert outside.float().mean() > 0.2 and (~outside).float().mean() > 0.2  # both kinds are exercised

    got = sample_discrete(value, loc)
    want = nearest_by_grid_sample(value, loc)
    assert got.shape == want.shape == (n, c, q, p)
    assert torch.equal(got, want)


@pytest.mark.parametrize("h, w", [(5, 9), (9, 5)])
def test_rectangular_maps_clamp_x_by_the_width_and_y_by_the_height(h, w):
    """Far right reads the last column and far down the last row (the original code clamps both by h)."""
    value = torch.arange(h * w, dtype=torch.float64).reshape(1, 1, h, w)
    loc = torch.tensor([[[[1.2, 0.0], [0.0, 1.2], [1.2, 1.2], [-0.5, -0.5]]]], dtype=torch.float64)
    got = sample_discrete(value, loc).flatten().tolist()
    assert got == [w - 1, (h - 1) * w, h * w - 1, 0]


def test_the_rule_rounds_loc_times_size_half_up():
    """A few hand-checked cells on a 2x3 map (values = flat index): x uses the width 3, y the height 2."""
    value = torch.arange(6, dtype=torch.float32).reshape(1, 1, 2, 3)
    cases = [  # (x, y) -> (column, row)
        ((0.0, 0.0), (0, 0)),
        ((0.2, 0.1), (1, 0)),      # x*3 = 0.6 -> floor(1.1) = 1; y*2 = 0.2 -> floor(0.7) = 0
        ((1 / 6, 0.25), (1, 1)),   # pixel centre (0.5, 0.5) rounds half up to the next cell
        ((0.49, 0.74), (1, 1)),    # 1.47 -> 1; 1.48 -> 1
        ((0.51, 0.76), (2, 1)),    # 1.53 -> 2; 1.52 -> 2 (clamped to row 1)
        ((0.99, 0.2), (2, 0)),
    ]
    loc = torch.tensor([[[list(xy) for xy, _ in cases]]], dtype=torch.float32)
    got = sample_discrete(value, loc).flatten().tolist()
    assert got == [row * 3 + col for _, (col, row) in cases]


def test_default_and_discrete_are_different_operators():
    value = torch.randn(2, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    loc = torch.rand(2, 30, 4, 2, generator=torch.Generator().manual_seed(1))
    bilinear, discrete = sample_bilinear(value, loc), sample_discrete(value, loc)
    assert bilinear.shape == discrete.shape
    assert float((bilinear - discrete).abs().max()) > 1e-3


def test_bilinear_sampling_reads_pixel_centres_exactly():
    value = torch.randn(1, 2, 5, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    rows, cols = torch.meshgrid(torch.arange(5, dtype=torch.float64), torch.arange(9, dtype=torch.float64),
                                indexing="ij")
    loc = torch.stack([(cols + 0.5) / 9, (rows + 0.5) / 5], -1).reshape(1, 45, 1, 2)
    got = sample_bilinear(value, loc).reshape(1, 2, 5, 9)
    assert torch.allclose(got, value, atol=1e-12)


def test_the_same_weights_give_different_logits_with_the_two_methods(hf_case, ours_from_folder):
    """The method changes what the model computes; loading a default folder with method='discrete' gives
    what transformers computes with decoder_method='discrete' on the same weights."""
    default_case, discrete_case = hf_case("tiny", "default"), hf_case("tiny", "discrete")
    default_model, default_out = ours_from_folder(default_case)
    switched = load_model(default_case.folder, method="discrete", image_size=320)
    assert switched.config.decoder_method == "discrete"
    with torch.no_grad():
        logits, boxes = switched(default_case.images)
    assert float((logits - default_out.logits).abs().max()) > 1e-3
    assert float((logits - discrete_case.hf.logits).abs().max()) <= 1e-4
    assert float((boxes - discrete_case.hf.boxes).abs().max()) <= 1e-4
