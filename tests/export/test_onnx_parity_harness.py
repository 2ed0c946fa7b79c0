"""The export tests' comparison (tests/onnx_parity.py) accepts only what a correct runtime may do differently.

It lets the PyTorch reference read the queries and cells that ONNX Runtime read, so these tests check that
it refuses everything else: a cell that is not a neighbour, a neighbour far from the rounding boundary, and
a query selection that scores lower than PyTorch's own. And that an accepted flip is really read.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import onnx_parity
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
from rtdetr_export.model.deformable_attention import MSDeformableAttention
from rtdetr_export.imaging.inputs import synthetic_images
from rtdetr_export.weights import load_model
from tiers import costly

# One worker runs this module (README: --dist loadgroup): its tests share an export and its observed ONNX Runtime run
# (tiny_run).
pytestmark = pytest.mark.xdist_group("onnx_parity_harness")


@pytest.fixture(scope="module")
@costly
def tiny_run(tmp_path_factory):
    model = load_model(preset="tiny", method="discrete")
    path = tmp_path_factory.mktemp("harness") / "m.onnx"
    export_onnx(model, path, OnnxExportOptions(verify=False, batch=1))
    images = synthetic_images(1, model.config.image_size, seed=5)
    return model, images, onnx_parity.run_onnx(path, {"images": images})


def _nearest_point(model, images):
    """(head, query, point, level, x, y, neighbour cell) of layer 0's point nearest a boundary that matters."""
    layers = [m for m in model.modules() if isinstance(m, MSDeformableAttention)]
    levels = []
    first_layer = lambda loc, h, w: levels.append((loc.clone(), h, w)) or loc  # noqa: E731
    with torch.no_grad(), model.observe_sampling([first_layer] + [None] * (len(layers) - 1)):
        model(torch.from_numpy(images))
    best, first = None, 0
    for level, (loc, h, w) in enumerate(levels):
        for axis, size in ((0, w), (1, h)):
            t = (loc[..., axis] * size + 0.5).double()
            inside = (t >= 1) & (t < size)  # crossing a boundary here changes the clamped cell
            distance = torch.where(inside, (t - t.round()).abs(), torch.tensor(float("inf")))
            d, flat = distance.flatten().min(0)
            if best is None or d < best[0]:
                _, q, head, p = np.unravel_index(int(flat), distance.shape)
                cell = torch.floor(loc[0, q, head, p] * torch.tensor([w, h]) + 0.5).to(torch.int64).tolist()
                across = list(cell)
                across[axis] += -1 if t[0, q, head, p] - torch.floor(t[0, q, head, p]) < 0.5 else 1
                best = (float(d), head, q, first + p, level, (h, w), across)
        first += loc.shape[3]
    return best


def _reading(model, run, head, query, point, level, cell):
    """A copy of the run whose layer-0 read for (head, query, point) is ``cell`` (x, y) of ``level``."""
    module = next(m for m in model.modules() if isinstance(m, MSDeformableAttention))
    shapes = model.decoder.anchor_shapes
    cells = [c.copy() for c in run.cells]
    view = cells[0].reshape(1, module.num_heads, run.queries.shape[1], sum(module.num_points))
    view[0, head, query, point] = sum(h * w for h, w in shapes[:level]) + cell[1] * shapes[level][1] + cell[0]
    return onnx_parity.OnnxRun(run.outputs, run.queries, cells)


def test_the_observed_run_of_a_correct_export_matches_at_the_strict_limits(tiny_run):
    model, images, run = tiny_run
    logits, boxes, flipped = onnx_parity.reference(model, images, run)
    errors = onnx_parity.parity_errors({"logits": logits.numpy(), "pred_boxes": boxes.numpy()}, run.outputs,
                                       ["logits", "pred_boxes"])
    assert flipped == 0 and errors["logits"] <= 1e-4 and errors["pred_boxes"] <= 1e-4, errors


def test_a_flip_across_a_near_boundary_is_accepted_and_really_read(tiny_run, monkeypatch):
    model, images, run = tiny_run
    distance, head, query, point, level, _, across = _nearest_point(model, images)
    # A tiny model rarely puts a point within FLIP_MARGIN of a boundary: widen it to just past this one.
    monkeypatch.setattr(onnx_parity, "FLIP_MARGIN", distance * 1.01 + 1e-9)
    monkeypatch.setattr(onnx_parity, "MAX_FLIPPED_FRACTION", 1 / run.queries.shape[1])  # one of its few queries
    plain, _, _ = onnx_parity.reference(model, images, run)
    flipped_logits, _, flipped = onnx_parity.reference(model, images, _reading(model, run, head, query, point,
                                                                              level, across))
    assert flipped == 1
    assert not torch.equal(flipped_logits[0, query], plain[0, query])


def test_a_neighbour_far_from_the_boundary_is_refused(tiny_run):
    model, images, run = tiny_run
    distance, head, query, point, level, _, across = _nearest_point(model, images)
    assert distance > onnx_parity.FLIP_MARGIN  # the tiny model's nearest point is not close enough
    with pytest.raises(AssertionError, match="from the boundary"):
        onnx_parity.reference(model, images, _reading(model, run, head, query, point, level, across))


def test_a_cell_that_is_not_a_neighbour_is_refused(tiny_run):
    model, images, run = tiny_run
    _, head, query, point, level, (h, w), across = _nearest_point(model, images)
    far = [(across[0] + w // 2) % w, across[1]]
    with pytest.raises(AssertionError, match="not a neighbour"):
        onnx_parity.reference(model, images, _reading(model, run, head, query, point, level, far))


def test_a_query_selection_that_scores_lower_than_pytorchs_is_refused(tiny_run):
    model, images, run = tiny_run
    queries = run.queries.copy()
    cells = sum(h * w for h, w in model.decoder.anchor_shapes)
    queries[0, 0] = next(c for c in range(cells) if c not in set(queries[0].tolist()))
    with pytest.raises(AssertionError, match="selected other queries"):
        onnx_parity.reference(model, images, onnx_parity.OnnxRun(run.outputs, queries, run.cells))
