"""Split artifacts at the batch and input sizes single files take: a dynamic batch (proven at 1 and 4), a static batch
(padded by the detector), a fixed rectangular input size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rtdetr_export.artifact import open_artifact
from rtdetr_export.backends.split_runner import SplitRunner
from rtdetr_export.pipeline import Detector, OnnxExportOptions, export_split
from rtdetr_export.verify import compare_raw, thresholds_for
from rtdetr_export.verify.reference import ReferenceRunner
from rtdetr_export.weights import load_model
from paths import DATA
from micro import micro_model

RECTANGLE = (128, 192)  # height, width: 16x24 + 8x12 + 4x6 = 504 encoder cells


def _cells(size: tuple[int, int]) -> int:
    return sum((size[0] // s) * (size[1] // s) for s in (8, 16, 32))


@pytest.mark.slow
def test_a_static_batch_rectangular_split_is_verified_at_its_batch_and_padded_by_the_detector(tmp_path):
    model = micro_model(image_size=RECTANGLE)
    result = export_split(model, tmp_path / "micro.onnx", OnnxExportOptions(batch=4))
    record = open_artifact(result.sidecar)
    assert record.static_batch == 4 and record.input_size == RECTANGLE
    assert record.encoder.io["images"].shape == (4, 3, *RECTANGLE)
    assert record.encoder.io["memory"].shape == (4, _cells(RECTANGLE), 32)
    assert record.verification.passed and [run.batch for run in record.verification.runs] == [4]
    # Four other images than the verification's, against the reference, by the FP32 limits.
    images = np.random.default_rng(7).random((4, 3, *RECTANGLE), dtype=np.float32)
    with SplitRunner(result.encoder, result.decoder, model.config.num_queries) as runner, \
            ReferenceRunner(model, "raw") as reference:
        assert compare_raw(reference.infer({"images": images}), runner.infer({"images": images}),
                           thresholds_for("fp32")).failures == []
    # Five pictures: one full batch, then one picture padded to four; each equals its own run.
    pictures = [Image.fromarray((image.transpose(1, 2, 0) * 255).astype(np.uint8)) for image in images] + \
        [Image.new("RGB", (300, 200), "gray")]
    with Detector.from_artifact(result.sidecar) as detector:
        together = detector.detect_batch(pictures, top_k=10)
        alone = [detector.detect_batch([picture], top_k=10)[0] for picture in pictures]
    assert len(together) == 5
    for a, b, picture in zip(together, alone, pictures):
        np.testing.assert_array_equal(a.labels, b.labels)
        # The detections head's FP32 box limit (pixels of the model input), in the picture's own pixels.
        limit = thresholds_for("fp32").box_px * max(picture.size) / max(RECTANGLE)
        np.testing.assert_allclose(a.boxes, b.boxes, rtol=0, atol=limit)


@pytest.mark.slow
def test_tiny_splits_at_a_rectangular_size_with_a_dynamic_batch(tmp_path):
    model = load_model(preset="tiny", image_size=(320, 480))
    result = export_split(model, tmp_path / "tiny.onnx", OnnxExportOptions(dynamic_batch=True))
    record = open_artifact(result.sidecar)
    assert record.input_size == (320, 480) and record.static_batch is None
    assert record.encoder.io["memory"].shape == ("batch", _cells((320, 480)), model.config.d_model)
    runs = record.verification.runs
    assert record.verification.passed and [run.batch for run in runs] == [1, 4]
    assert all(check.value <= thresholds_for("fp32").max_abs for run in runs for check in run.outputs.values())
    with Detector.from_artifact(result.encoder) as detector:
        assert detector.input_size == (320, 480) and detector.static_batch is None
        found = detector.detect_batch([Image.open(DATA / "images" / "astronaut.jpg")] * 2, top_k=5)
    assert [len(d) for d in found] == [5, 5]
    np.testing.assert_array_equal(found[0].labels, found[1].labels)
