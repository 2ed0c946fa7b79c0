"""Verification excuses a discrete-sampler row only when a rounding flip provably explains it.

Two correct float32 runtimes may round a sampling point that sits within float noise of a cell boundary to
neighbouring cells. Verification suspects such rows (the reference saw a point of that query near a
boundary) and then proves the flip: the reference, re-run with that point rounded the other way, must
reproduce the candidate within the ordinary 1e-4 limit. A tiny model rarely puts a point within 1e-4 cells
of a boundary, so these tests widen FLIP_MARGIN to make one; the rule under test is unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtdetr_export.model.deformable_attention import discrete_cell_index
from rtdetr_export.verify import compare as compare_module
from rtdetr_export.verify import margins as margins_module
from rtdetr_export.verify.compare import Thresholds
from rtdetr_export.imaging.inputs import synthetic_images
from rtdetr_export.verify.margins import flip_near_boundaries, point_margins
from rtdetr_export.verify.reference import MARGIN, ReferenceRunner
from rtdetr_export.verify.verification import compare_outputs
from rtdetr_export.weights import load_model

WIDE_MARGIN = 0.05


def test_a_flip_moves_exactly_the_points_within_the_limit_of_the_chosen_queries_to_the_neighbouring_cell():
    # 1 image, 2 queries, 1 head, 3 points, map 10 x 10 (x, y); margins 1e-5, 1e-5 (y), 2e-3.
    loc = torch.tensor([[[[[0.15 + 1e-6, 0.52], [0.52, 0.85 - 1e-6], [0.3502, 0.47]]],
                         [[[0.15 + 1e-6, 0.52], [0.52, 0.52], [0.33, 0.47]]]]])
    assert point_margins(loc, 10, 10)[0, 0, 0].tolist() == pytest.approx([1e-5, 1e-5, 2e-3], abs=1e-6)
    before = discrete_cell_index(loc, 10, 10)
    after = discrete_cell_index(flip_near_boundaries(loc, 10, 10, torch.tensor([[1e-4, -1.0]])), 10, 10)
    assert after[0, 0, 0].tolist() == [before[0, 0, 0, 0] - 1, before[0, 0, 0, 1] + 10, before[0, 0, 0, 2]]
    assert torch.equal(after[0, 1], before[0, 1])  # not chosen: untouched even though its first point is near
    nearest_only = discrete_cell_index(flip_near_boundaries(loc, 10, 10, torch.tensor([[0.0, -1.0]])), 10, 10)
    assert torch.equal(nearest_only, before)  # no point within 0 cells


@pytest.fixture(scope="module")
def tiny_discrete():
    model = load_model(preset="tiny", method="discrete")
    size = model.config.image_size
    feed = {"images": synthetic_images(2, size, seed=3),
            "orig_target_sizes": np.array([[size[1], size[0]], [2 * size[1], size[0]]], dtype=np.int64)}
    return model, feed


@pytest.fixture
def wide_margin(monkeypatch):
    monkeypatch.setattr(margins_module, "FLIP_MARGIN", WIDE_MARGIN)
    monkeypatch.setattr(compare_module, "FLIP_MARGIN", WIDE_MARGIN)


def _flipped_candidate(model, feed, head="raw"):
    """A candidate that rounded the nearest point of one query the other way, as a runtime may: the
    nearest-to-a-boundary query, among those behind the ten best detections for the detections head,
    whose flip changes the outputs beyond float noise."""
    with ReferenceRunner(model, head) as reference:
        ref = reference.infer(feed)
        margin = ref[MARGIN].copy()
        if head == "detections":
            shown = np.zeros(margin.shape, dtype=bool)
            np.put_along_axis(shown, ref["_query"][:, :10].astype(np.int64), True, axis=1)
            margin[~shown] = np.inf
        for flat in np.argsort(margin, axis=None)[:20]:
            query = np.unravel_index(flat, margin.shape)
            assert margin[query] < WIDE_MARGIN
            flip = np.full(margin.shape, -1.0)
            flip[query] = margin[query]
            test = {k: v for k, v in reference.infer(feed, flip=flip).items() if not k.startswith("_")}
            if compare_outputs(head, feed, ref, test, Thresholds()).failures:
                return ref, test, query
    raise AssertionError("no near-boundary flip changes this model's outputs beyond float noise")


@pytest.mark.parametrize("head", ["raw", "detections"])
def test_a_candidate_that_flipped_a_near_boundary_rounding_passes_and_the_flip_is_counted(
        tiny_discrete, wide_margin, head):
    model, feed = tiny_discrete
    ref, test, _ = _flipped_candidate(model, feed, head)
    with ReferenceRunner(model, head) as reference:
        plain = compare_outputs(head, feed, ref, test, Thresholds())  # no reference: nothing can be proven
        proven = compare_outputs(head, feed, ref, test, Thresholds(), reference)
    assert plain.failures  # without a reference to re-run, a flip cannot be proven
    assert not proven.failures and proven.flipped_rows == 1
    if head == "raw":
        logits = proven.outputs["logits"]
        assert logits.metric == "max_abs_unflipped" and logits.value <= 1e-4 < logits.stats["max_abs"]
    else:
        boxes, scores, labels = (proven.outputs[name] for name in ("boxes", "scores", "labels"))
        assert boxes.metric == "max_abs_px" and boxes.value <= 1e-2 and scores.value <= 1e-4
        assert labels.metric == "agreement" and labels.value == 1.0


def test_an_error_on_a_near_boundary_query_that_no_flip_reproduces_fails(tiny_discrete, wide_margin):
    model, feed = tiny_discrete
    ref, test, (b, q) = _flipped_candidate(model, feed)
    test["logits"][b, q] += 0.003  # the flip's row plus a small error of another kind
    with ReferenceRunner(model, "raw") as reference:
        run = compare_outputs("raw", feed, ref, test, Thresholds(), reference)
    assert run.failures and run.flipped_rows == 0
    assert "does not reproduce the candidate" in run.failures[-1]


def test_an_error_on_a_query_far_from_any_boundary_is_never_excused(tiny_discrete):
    model, feed = tiny_discrete
    with ReferenceRunner(model, "raw") as reference:
        ref = reference.infer(feed)
        b, q = np.unravel_index(np.argmax(ref[MARGIN]), ref[MARGIN].shape)
        test = {k: v.copy() for k, v in ref.items() if k != MARGIN}
        test["pred_boxes"][b, q] += 1e-3
        run = compare_outputs("raw", feed, ref, test, Thresholds(), reference)
    assert ref[MARGIN][b, q] > 1e-4
    assert run.failures and run.flipped_rows == 0


def test_the_flip_goes_to_the_other_side_of_the_cell_the_model_actually_read():
    # float64 puts 0.4749999940 * 20 + 0.5 just below 10; the model's float32 arithmetic rounds it onto 10.
    loc = torch.tensor([[[[[0.4749999940395355, 0.52]]]]])
    assert loc[..., 0] * 20 + 0.5 == 10.0 and point_margins(loc, 20, 20).item() < 1e-6
    before = discrete_cell_index(loc, 20, 20)
    after = discrete_cell_index(flip_near_boundaries(loc, 20, 20, torch.tensor([[1e-6]])), 20, 20)
    assert (after - before).item() == -1
