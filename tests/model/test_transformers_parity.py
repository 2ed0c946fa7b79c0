"""Our RT-DETRv2, loaded from a transformers folder, computes what transformers' RTDetrV2 computes.

The oracle is ``transformers.RTDetrV2ForObjectDetection`` with seeded, well-conditioned random weights (see
conftest.py), saved with ``save_pretrained`` and loaded with our ``load_model``. Tolerance: 1e-4 absolute on
logits and on boxes (float32, two different implementations; measured up to ~1e-5 on r50vd).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import PRESET_SIZES, DetectorOutputs, as_numpy, compare_detectors
from rtdetr_export.imaging import postprocess

pytest.importorskip("transformers")

PARITY_TOL = 1e-4
SCORE_TOL = 1e-5  # post-processed scores (float32 sigmoid in transformers, float64 in ours)
BOX_TOL_PX = 1e-3  # post-processed boxes, in pixels of the target size

CASES = [
    pytest.param("tiny", "default", id="tiny-default"),
    pytest.param("tiny", "discrete", id="tiny-discrete"),
    pytest.param("r18vd", "default", id="r18vd-default", marks=pytest.mark.slow),
    pytest.param("r18vd", "discrete", id="r18vd-discrete", marks=pytest.mark.slow),
    pytest.param("r50vd", "default", id="r50vd-default", marks=pytest.mark.slow),
    pytest.param("r50vd", "discrete", id="r50vd-discrete", marks=pytest.mark.slow),
]


def test_the_two_test_inputs_are_distinct(images_for):
    images = images_for("tiny")
    assert images.shape == (2, 3, 320, 320)
    assert float((images[0] - images[1]).abs().mean()) > 0.1
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0


def _synthetic_outputs(scores: list[float]) -> DetectorOutputs:
    g = torch.Generator().manual_seed(0)
    q = len(scores)
    topk = torch.tensor([scores])
    everything = torch.cat([topk, torch.full((1, 10), min(scores) - 1.0)], 1)
    return DetectorOutputs(torch.randn(1, q, 5, generator=g), torch.rand(1, q, 4, generator=g), topk, everything)


def _swap(outputs: DetectorOutputs, i: int, j: int) -> DetectorOutputs:
    order = list(range(outputs.logits.shape[1]))
    order[i], order[j] = order[j], order[i]
    return DetectorOutputs(outputs.logits[:, order], outputs.boxes[:, order], outputs.topk_scores[:, order],
                           outputs.all_scores)


def test_the_comparison_accepts_reordering_only_between_tied_queries():
    tied = _synthetic_outputs([3.0, 2.0, 2.0 + 1e-6, 1.0])
    result = compare_detectors(tied, _swap(tied, 1, 2), 1e-4)
    assert result.used_fallback and result.moved_rows == 2 and result.matched_max_diff == 0.0
    distinct = _synthetic_outputs([3.0, 2.0, 1.5, 1.0])
    with pytest.raises(AssertionError, match="no selected queries tie"):
        compare_detectors(distinct, _swap(distinct, 1, 2), 1e-4)
    with pytest.raises(AssertionError, match="selection score differs"):
        compare_detectors(tied, _swap(tied, 0, 3), 1e-4)  # a tie elsewhere does not excuse moving other rows


@pytest.mark.parametrize("preset_name, method", CASES)
def test_outputs_match_transformers_on_two_distinct_images(preset_name, method, hf_case, ours_from_folder):
    case = hf_case(preset_name, method)
    model, ours = ours_from_folder(case)
    assert model.config.decoder_method == method
    assert model.source.format == "transformers"
    size = PRESET_SIZES[preset_name]
    assert ours.logits.shape == (2, model.config.num_queries, 80)
    assert ours.boxes.shape == (2, model.config.num_queries, 4)
    assert case.images.shape == (2, 3, size, size)
    # The two images must give different outputs, or "two inputs" would test one.
    assert float((ours.logits[0] - ours.logits[1]).abs().max()) > 1e-2

    result = compare_detectors(case.hf, ours, PARITY_TOL)
    print(f"{preset_name}/{method}: ordered max diff {result.ordered_max_diff:.3g}, "
          f"fallback {result.used_fallback} (moved {result.moved_rows} rows), matched {result.matched_max_diff:.3g}")
    assert result.matched_max_diff <= PARITY_TOL


@pytest.mark.parametrize("preset_name", ["tiny", pytest.param("r18vd", marks=pytest.mark.slow)])
def test_encoder_query_selection_matches_transformers(preset_name, hf_case, ours_from_folder):
    """The encoder scores every cell the same way, so the same cells are picked as initial queries."""
    case = hf_case(preset_name, "default")
    _, ours = ours_from_folder(case)
    diff = float((case.hf.all_scores - ours.all_scores).abs().max())
    assert diff <= PARITY_TOL
    for i in range(2):
        k = ours.logits.shape[1]
        assert set(torch.topk(case.hf.all_scores[i], k).indices.tolist()) == \
            set(torch.topk(ours.all_scores[i], k).indices.tolist())


def _threshold_in_a_gap(score_sets: list[np.ndarray], min_margin: float = 2e-4) -> float:
    """The highest threshold that keeps >= 3 detections per image and lies >= min_margin from every score (scores agree to ~1e-7)."""
    hi = min(float(np.sort(s)[-3]) for s in score_sets)  # at least 3 detections in every image
    everything = np.concatenate(score_sets)
    for t in np.linspace(hi - 2 * min_margin, hi - 0.05, 500):
        if np.abs(everything - t).min() >= min_margin:
            return float(t)
    raise AssertionError("no threshold with a clear margin from every score: change the fixture seed")


def _pair_detections(ours, theirs) -> tuple[float, float]:
    """Pair our detections with transformers' (same label); returns (max score diff, max box diff in px)."""
    assert len(ours) == len(theirs["scores"])
    t_scores = theirs["scores"].double().numpy()
    t_labels = theirs["labels"].numpy()
    t_boxes = theirs["boxes"].double().numpy()
    if np.array_equal(ours.labels, t_labels):
        return (float(np.abs(ours.scores - t_scores).max()), float(np.abs(ours.boxes - t_boxes).max()))
    # Equal scores may come out in either order: pair each detection with the closest one of the same label.
    unused = set(range(len(t_scores)))
    worst_score = worst_box = 0.0
    for score, label, box in zip(ours.scores, ours.labels, ours.boxes):
        options = [j for j in unused if t_labels[j] == label]
        assert options, f"no transformers detection left with label {label}"
        j = min(options, key=lambda j: abs(t_scores[j] - score) + np.abs(t_boxes[j] - box).max())
        unused.remove(j)
        worst_score = max(worst_score, abs(t_scores[j] - score))
        worst_box = max(worst_box, float(np.abs(t_boxes[j] - box).max()))
    return worst_score, worst_box


@pytest.mark.parametrize("preset_name, method", [
    pytest.param("tiny", "default", id="tiny-default"),
    pytest.param("tiny", "discrete", id="tiny-discrete"),
    pytest.param("r50vd", "default", id="r50vd-default", marks=pytest.mark.slow),
])
def test_postprocessed_detections_match_transformers_post_processor(preset_name, method, hf_case, ours_from_folder):
    from transformers import RTDetrImageProcessor

    case = hf_case(preset_name, method)
    _, ours = ours_from_folder(case)
    sizes = [(480, 640), (300, 500)]  # (height, width), deliberately not square and different per image
    logits, boxes = as_numpy(ours.logits, ours.boxes)
    threshold = _threshold_in_a_gap([1 / (1 + np.exp(-logits[i].astype(np.float64).ravel())) for i in range(2)])

    mine = postprocess(logits, boxes, image_sizes=sizes, threshold=threshold)
    theirs = RTDetrImageProcessor().post_process_object_detection(
        case.hf_raw, threshold=threshold, target_sizes=torch.tensor(sizes))
    assert len(mine) == len(theirs) == 2
    for i in range(2):
        assert len(mine[i]) > 0, "the threshold must keep some detections, or nothing is compared"
        score_diff, box_diff = _pair_detections(mine[i], theirs[i])
        print(f"{preset_name}/{method} image {i}: {len(mine[i])} detections at threshold {threshold:.4f}, "
              f"score diff {score_diff:.3g}, box diff {box_diff:.3g} px")
        assert score_diff <= SCORE_TOL
        assert box_diff <= BOX_TOL_PX
        height, width = sizes[i]
        assert mine[i].boxes[:, [0, 2]].max() <= width * 1.5 and mine[i].boxes[:, [1, 3]].max() <= height * 1.5
