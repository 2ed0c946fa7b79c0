"""Image -> model input and model output -> detections, against transformers' RTDetrImageProcessor and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rtdetr_export.imaging import COCO_CLASSES, cxcywh_to_xyxy, load_image, postprocess, preprocess, preprocess_batch

transformers = pytest.importorskip("transformers")

# transformers' PIL backend resizes with the same PIL bilinear filter and rescales by 1/255, so the tensors are
# identical (measured max diff 0.0 on every size below). 1e-6 only allows for x * (1/255) vs x / 255 rounding.
# (A torchvision backend would resample differently; the PIL processor is picked explicitly to stay comparable.)
PREPROCESS_TOL = 1e-6


def processor_class():
    return getattr(transformers, "RTDetrImageProcessorPil", None) or transformers.RTDetrImageProcessor


def synthetic_image(height: int = 37, width: int = 53) -> Image.Image:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    smooth = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (height + width)], -1)
    noisy = smooth + rng.normal(0, 20, smooth.shape)
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8), "RGB")


def test_preprocess_gives_nchw_float32_in_unit_range():
    out = preprocess(synthetic_image(), (48, 64))
    assert out.shape == (1, 3, 48, 64)
    assert out.dtype == np.float32
    assert out.flags["C_CONTIGUOUS"]
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert out.max() > 0.5 and out.min() < 0.2  # really rescaled by 1/255, not 1/65535 or left in 0..255


def test_preprocess_is_rgb_channel_first():
    image = Image.new("RGB", (10, 6), (255, 0, 128))
    out = preprocess(image, (6, 10))
    assert np.allclose(out[0, :, 0, 0], [1.0, 0.0, 128 / 255])


def test_preprocess_converts_grayscale_and_rgba_to_rgb():
    gray = Image.new("L", (8, 8), 51)
    rgba = Image.new("RGBA", (8, 8), (10, 20, 30, 0))
    assert np.allclose(preprocess(gray, (8, 8)), 0.2)
    assert np.allclose(preprocess(rgba, (8, 8))[0, :, 3, 3], [10 / 255, 20 / 255, 30 / 255])


def test_transformers_processor_defaults_are_what_we_mirror():
    processor = processor_class()()
    assert processor.do_resize and processor.do_rescale
    assert not processor.do_normalize  # RT-DETR takes [0, 1] RGB without mean/std normalisation
    assert int(processor.resample) == int(Image.Resampling.BILINEAR)
    assert abs(processor.rescale_factor - 1 / 255) < 1e-12


@pytest.mark.parametrize("size", [(48, 64), (64, 48), (37, 53), (20, 30), (320, 320)])
def test_preprocess_equals_transformers_image_processor(size):
    image = synthetic_image()
    processor = processor_class()(size={"height": size[0], "width": size[1]})
    theirs = processor(images=image, return_tensors="np")["pixel_values"]
    ours = preprocess(image, size)
    assert ours.shape == theirs.shape == (1, 3, *size)
    assert float(np.abs(ours - theirs).max()) <= PREPROCESS_TOL


def test_preprocess_batch_stacks_images(tmp_path):
    path = tmp_path / "a.png"
    synthetic_image().save(path)
    images = [load_image(path), synthetic_image(20, 20)]
    batch = preprocess_batch(images, (32, 32))
    assert batch.shape == (2, 3, 32, 32)
    assert np.array_equal(batch[0], preprocess(images[0], (32, 32))[0])


# -- postprocess ---------------------------------------------------------------------------------------------------
def _empty(n=1, q=5, c=6, fill=-20.0):
    logits = np.full((n, q, c), fill, np.float32)
    boxes = np.tile(np.array([0.5, 0.5, 0.1, 0.1], np.float32), (n, q, 1))
    return logits, boxes


def test_one_confident_query_becomes_one_box_in_pixels():
    logits, boxes = _empty()
    logits[0, 2, 3] = 10.0
    boxes[0, 2] = [0.5, 0.25, 0.2, 0.1]  # cx, cy, w, h in [0, 1]
    (det,) = postprocess(logits, boxes, image_sizes=[(200, 400)], threshold=0.5)  # (height, width)
    assert len(det) == 1
    assert det.labels.tolist() == [3]
    assert det.scores[0] == pytest.approx(1 / (1 + np.exp(-10.0)), abs=1e-7)
    # x scales with the width (400), y with the height (200)
    assert np.allclose(det.boxes[0], [160.0, 40.0, 240.0, 60.0], atol=1e-4)
    assert det.boxes.dtype == np.float32 and det.labels.dtype == np.int64
    assert det.to_list(list(COCO_CLASSES))[0]["name"] == COCO_CLASSES[3]


def test_detections_are_sorted_by_score_and_limited_by_top_k():
    logits, boxes = _empty(q=4, c=3)
    logits[0, 0, 1], logits[0, 3, 2], logits[0, 1, 0] = 1.0, 3.0, 2.0
    (det,) = postprocess(logits, boxes, [(100, 100)], threshold=0.5)
    assert det.labels.tolist() == [2, 0, 1]
    assert np.all(np.diff(det.scores) < 0)
    (top2,) = postprocess(logits, boxes, [(100, 100)], threshold=0.5, top_k=2)
    assert top2.labels.tolist() == [2, 0]


def test_one_query_can_give_several_classes_and_the_threshold_is_strict():
    logits, boxes = _empty(q=2, c=4)
    logits[0, 1, 0], logits[0, 1, 2] = 4.0, 5.0
    logits[0, 0, 3] = 0.0  # sigmoid(0) == 0.5 exactly: not above a 0.5 threshold
    (det,) = postprocess(logits, boxes, [(10, 10)], threshold=0.5)
    assert det.labels.tolist() == [2, 0]
    assert np.array_equal(det.boxes[0], det.boxes[1])


def test_equal_scores_keep_the_lower_query_first():
    logits, boxes = _empty(q=3, c=2)
    logits[0, 2, 1] = logits[0, 0, 1] = 2.0
    boxes[0, 0], boxes[0, 2] = [0.1, 0.1, 0.1, 0.1], [0.9, 0.9, 0.1, 0.1]
    (det,) = postprocess(logits, boxes, [(100, 100)], threshold=0.5)
    assert np.allclose(det.boxes[:, 0], [5.0, 85.0])


def test_each_image_uses_its_own_size():
    logits, boxes = _empty(n=2)
    logits[:, 0, 0] = 10.0
    boxes[:, 0] = [0.5, 0.5, 1.0, 1.0]
    dets = postprocess(logits, boxes, [(100, 200), (300, 50)], threshold=0.5)
    assert np.allclose(dets[0].boxes[0], [0, 0, 200, 100])
    assert np.allclose(dets[1].boxes[0], [0, 0, 50, 300])


def test_nothing_above_the_threshold_gives_empty_detections():
    logits, boxes = _empty(n=2)
    dets = postprocess(logits, boxes, [(10, 10), (10, 10)], threshold=0.5)
    assert [len(d) for d in dets] == [0, 0]
    assert dets[0].boxes.shape == (0, 4)


def test_cxcywh_to_xyxy():
    assert np.allclose(cxcywh_to_xyxy(np.array([[0.5, 0.5, 0.2, 0.4]])), [[0.4, 0.3, 0.6, 0.7]])


def test_postprocess_equals_transformers_on_random_outputs():
    """Many queries and classes, non-square sizes, a threshold that keeps a few dozen detections."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 60, 11, generator=g) * 2 - 3
    boxes = torch.rand(2, 60, 4, generator=g) * 0.5 + 0.25
    sizes = [(480, 640), (333, 250)]

    class Outputs:  # what the post-processor reads
        pass

    out = Outputs()
    out.logits, out.pred_boxes = logits, boxes
    threshold = 0.3
    theirs = processor_class()().post_process_object_detection(out, threshold=threshold,
                                                                target_sizes=torch.tensor(sizes))
    mine = postprocess(logits.numpy(), boxes.numpy(), sizes, threshold=threshold)
    for m, t in zip(mine, theirs):
        assert len(m) == len(t["scores"]) > 5
        assert m.labels.tolist() == t["labels"].tolist()
        assert float(np.abs(m.scores - t["scores"].numpy()).max()) <= 1e-6
        assert float(np.abs(m.boxes - t["boxes"].numpy()).max()) <= 1e-3
