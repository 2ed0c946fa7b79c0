"""Input sizes other than square: `--image-size HxW` builds anchors, the valid mask and AIFI's position embedding
for that size, and the static export computes what transformers computes at that size, with either way of
writing bilinear sampling."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from conftest import DetectorOutputs, compare_detectors, hf_outputs, make_images
from rtdetr_export.cli import main
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model.config import parse_image_size
from rtdetr_export.weights import load_model

PARITY_TOL = 1e-4


@pytest.mark.parametrize("text, size", [("640", (640, 640)), ("736x1280", (736, 1280)), ("480X640", (480, 640)),
                                        (512, (512, 512)), ((96, 64), (96, 64))])
def test_an_image_size_is_n_or_hxw(text, size):
    assert parse_image_size(text) == size


@pytest.mark.parametrize("text, message", [("650", "multiples of 32"), ("640x100", "multiples of 32"),
                                           ("32x640", "at least 64"), ("640x", "HxW"), ("a", "HxW")])
def test_a_bad_image_size_is_one_line_naming_the_rule(text, message):
    with pytest.raises(RTDetrExportError, match=message) as caught:
        parse_image_size(text)
    assert "\n" not in str(caught.value)


def _transformers_at(case, height: int, width: int, made_once, seed: int = 3) -> tuple[torch.Tensor, DetectorOutputs]:
    """transformers' own outputs at (height, width) on images made with ``seed``, from the case's folder; run once
    per test run."""
    import transformers

    images = make_images(height, width, seed=seed)

    def run(folder):
        model = transformers.RTDetrV2ForObjectDetection.from_pretrained(case.folder).eval()
        with torch.no_grad():
            torch.save(vars(hf_outputs(model(pixel_values=images))), folder / "outputs.pt")

    saved = made_once(f"{case.folder.parent.name}_at_{height}x{width}_seed{seed}", run)
    return images, DetectorOutputs(**torch.load(saved / "outputs.pt"))


def _export_and_compare(case, size: str, op: str, images: torch.Tensor, want: DetectorOutputs, tmp_path) -> float:
    out = tmp_path / f"{op}.onnx"
    result = CliRunner().invoke(main, ["onnx", "--model", str(case.folder), "--image-size", size, "--bilinear-op",
                                       op, "--batch", str(len(images)), "--quiet", "--no-verify", "-o", str(out)])
    assert result.exit_code == 0, result.output
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["input_size"] == list(images.shape[2:]) and sidecar["sampler"] == f"{op}-bilinear"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == list(images.shape)
    logits, boxes = session.run(["logits", "pred_boxes"], {"images": images.numpy()})
    got = DetectorOutputs(torch.from_numpy(logits), torch.from_numpy(boxes), want.topk_scores, want.all_scores)
    return compare_detectors(want, got, PARITY_TOL).matched_max_diff


@pytest.mark.slow
@pytest.mark.parametrize("op", ["gather", "gridsample"])
def test_a_480x640_export_matches_transformers_at_480x640(op, hf_case, made_once, tmp_path):
    case = hf_case("tiny", "default")
    images, want = _transformers_at(case, 480, 640, made_once)
    diff = _export_and_compare(case, "480x640", op, images, want, tmp_path)
    print(f"tiny 480x640 {op}: ONNX Runtime vs transformers {diff:.3g}")
    assert diff <= PARITY_TOL


@pytest.mark.slow
@pytest.mark.parametrize("op", ["gather", "gridsample"])  # one test each: the two workers can share them
def test_a_736x1280_r18vd_export_matches_transformers_with_either_bilinear_op(op, hf_case, made_once, tmp_path):
    case = hf_case("r18vd", "default")
    # Seed 7: on seed 3's second image the 300th and 301st encoder scores are 6.3e-5 apart, closer than the 1e-4
    # within which two implementations may pick either cell (conftest.TIE_EPS), so no comparison is possible there.
    # (Run alone, the seed-3 test failed this way before too; in full runs the oracle a worker built used to depend
    # on which sampler it asked for first.) Seed 7's gaps: 9.0e-4 and 9.8e-4.
    images, want = _transformers_at(case, 736, 1280, made_once, seed=7)
    diff = _export_and_compare(case, "736x1280", op, images, want, tmp_path)
    print(f"r18vd 736x1280 {op}: ONNX Runtime vs transformers {diff:.3g}")
    assert diff <= PARITY_TOL


def test_rectangular_models_build_their_constants_for_their_own_shape():
    """Anchors follow the map's (H, W) and AIFI's embedding is row-major over H rows of W cells: a transposed
    size has the same cell count and different constants."""
    wide, tall = load_model(preset="tiny", image_size=(256, 320)), load_model(preset="tiny", image_size=(320, 256))
    assert wide.decoder.anchor_shapes == [(32, 40), (16, 20), (8, 10)]
    assert tall.decoder.anchor_shapes == [(40, 32), (20, 16), (10, 8)]
    assert wide.decoder.anchors.shape == tall.decoder.anchors.shape
    assert not torch.equal(wide.decoder.anchors, tall.decoder.anchors)
    assert wide.encoder.encoder[0].map_size == (8, 10)
    assert not torch.equal(wide.encoder.encoder[0].pos_embed, tall.encoder.encoder[0].pos_embed)
    # Row 0's cells share one y; along a row only x advances (the [sin y | cos y | sin x | cos x] layout).
    embed = wide.encoder.encoder[0].pos_embed[0]
    quarter = embed.shape[1] // 4
    assert np.allclose(embed[:10, :2 * quarter], embed[0, :2 * quarter])
    assert not np.allclose(embed[:10, 2 * quarter:], embed[0, 2 * quarter:])
