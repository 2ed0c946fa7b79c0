"""A model loaded from a transformers folder exports to ONNX and, run by ONNX Runtime, computes what
transformers' own RTDetrV2ForObjectDetection computes (the oracle of conftest.py), to 1e-4."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from conftest import PRESET_SIZES, DetectorOutputs, compare_detectors
from rtdetr_export.cli import main
from rtdetr_export.artifact import read_metadata
from rtdetr_export.verify.margins import FLIP_MARGIN, record_rounding_margins
from rtdetr_export.weights import file_sha256, load_model

pytest.importorskip("transformers")

PARITY_TOL = 1e-4


@pytest.mark.parametrize("preset_name, method", [
    ("tiny", "default"),
    ("tiny", "discrete"),
    pytest.param("r18vd", "discrete", marks=pytest.mark.slow),
])
@pytest.mark.slow
def test_onnx_from_a_transformers_folder_matches_transformers(preset_name, method, hf_case, tmp_path):
    case = hf_case(preset_name, method)
    out = tmp_path / "model.onnx"
    size = str(PRESET_SIZES[preset_name])
    result = CliRunner().invoke(main, ["onnx", "--model", str(case.folder), "--image-size", size,
                                       "--dynamic-batch", "--quiet", "-o", str(out)])
    assert result.exit_code == 0, result.output

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits, boxes = session.run(["logits", "pred_boxes"], {"images": case.images.numpy()})
    reference = case.hf
    if method == "discrete":
        reference = _without_rounding_flips(case, logits, boxes)
    ours = DetectorOutputs(torch.from_numpy(logits), torch.from_numpy(boxes), case.hf.topk_scores,
                           case.hf.all_scores)
    comparison = compare_detectors(reference, ours, PARITY_TOL)
    print(f"{preset_name}/{method}: ONNX Runtime vs transformers max diff {comparison.matched_max_diff:.3g} "
          f"(re-paired rows {comparison.moved_rows})")
    assert comparison.matched_max_diff <= PARITY_TOL

    # The artifact says where it came from: the folder's weights file, by name and digest, and the method.
    weights = case.folder / "model.safetensors"
    for record in (json.loads(out.with_suffix(".json").read_text()), read_metadata(onnx.load(str(out)))):
        assert record["model"]["source"] == {"format": "transformers", "file": "model.safetensors",
                                             "sha256": file_sha256(weights), "seed": None}
        assert record["method"] == method
        assert record["sampler"] == ("gather-nearest" if method == "discrete" else "gather-bilinear")
        assert record["schema_version"] == 4 and "bilinear_op" not in record["export"]
        assert record["verification"]["passed"]
    assert np.isfinite(logits).all() and np.isfinite(boxes).all()


def _without_rounding_flips(case, logits: np.ndarray, boxes: np.ndarray) -> DetectorOutputs:
    """transformers' outputs with the rows that a rounding-boundary flip changed replaced by ONNX Runtime's.

    A row may be replaced only if our PyTorch run (same weights, same query order) put one of that query's
    sampling points within FLIP_MARGIN cells of a rounding boundary, and for at most 1% of the rows.
    """
    model = load_model(case.folder, image_size=PRESET_SIZES[case.preset])
    with torch.no_grad(), record_rounding_margins(model) as recorder:
        model(case.images)
    margins = recorder.as_numpy()
    hf_logits, hf_boxes = case.hf.logits.numpy(), case.hf.boxes.numpy()
    row_err = np.maximum(np.abs(hf_logits - logits).max(-1), np.abs(hf_boxes - boxes).max(-1))
    flipped = (row_err > PARITY_TOL) & (margins < FLIP_MARGIN)
    assert flipped.mean() <= 0.01 and row_err[flipped].max(initial=0.0) <= 1e-2, row_err[flipped]
    print(f"{case.preset}/{case.method}: {int(flipped.sum())} rows differ by a rounding-boundary flip")
    return DetectorOutputs(torch.from_numpy(np.where(flipped[..., None], logits, hf_logits)),
                           torch.from_numpy(np.where(flipped[..., None], boxes, hf_boxes)),
                           case.hf.topk_scores, case.hf.all_scores)
