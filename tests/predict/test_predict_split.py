"""`rtdetr-export predict` on a split artifact: the detections predict gives on the single ONNX file of the same
export (the trained fixture), and a one-line error, with nothing written, for a split whose files do not belong
together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from rtdetr_export.cli import main
from rtdetr_export.verify import thresholds_for
from paths import DATA
from split_cases import one_line_error

VAL_IMAGES = DATA / "fixture" / "shapes_val" / "images"
THRESHOLD = 0.3


def _predict(artifact: Path, images: list[Path], out: Path) -> dict:
    result = CliRunner().invoke(main, ["predict", *map(str, images), "--artifact", str(artifact), "--threshold",
                                       str(THRESHOLD), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return json.loads((out / "predictions.json").read_text())


@pytest.mark.slow
def test_predict_on_a_split_equals_predict_on_the_single_file(shapes_split_and_single, tmp_path):
    split, single = shapes_split_and_single
    images = sorted(VAL_IMAGES.iterdir())[:8]
    ours, theirs = _predict(split, images, tmp_path / "split"), _predict(single, images, tmp_path / "single")
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == \
        sorted(p.name for p in (tmp_path / "single").iterdir())
    assert ours["info"]["backend"].startswith("onnxruntime-split (shapes_split.json")
    assert ours["categories"] == theirs["categories"]
    assert [i["detections"] for i in ours["images"]] == [i["detections"] for i in theirs["images"]]
    assert len(theirs["annotations"]) >= len(images)  # the trained model finds its shapes: not a vacuous match
    limit = thresholds_for("fp32").max_abs  # the raw head's limit on logits and boxes (cxcywh in [0, 1])
    sizes = {i["id"]: (i["width"], i["height"]) for i in theirs["images"]}
    for got, want in zip(ours["annotations"], theirs["annotations"]):
        assert (got["image_id"], got["category_id"]) == (want["image_id"], want["category_id"])
        assert abs(got["score"] - want["score"]) <= limit / 4  # the sigmoid's slope is at most 1/4
        # A corner (cx -/+ w/2) moves by at most 1.5 limits of the image side, a width or height by 1 limit.
        width, height = sizes[got["image_id"]]
        for i, (a, b) in enumerate(zip(got["bbox"], want["bbox"])):
            side = width if i % 2 == 0 else height
            assert abs(a - b) <= (1.5 if i < 2 else 1.0) * limit * side


@pytest.mark.parametrize("case", ["missing", "mixed"])
@pytest.mark.parametrize("opened", ["micro.json", "micro.encoder.onnx"])
def test_a_split_whose_files_do_not_belong_together_is_one_line_and_nothing_is_written(broken_split, tmp_path, case,
                                                                                      opened):
    sidecar, why = broken_split[case]
    image = tmp_path / "image.png"
    Image.new("RGB", (64, 48), "white").save(image)
    out = tmp_path / "predictions"
    result = CliRunner().invoke(main, ["predict", str(image), "--artifact", str(sidecar.parent / opened),
                                       "-o", str(out)])
    assert result.exit_code != 0
    line = one_line_error(result.output)
    assert str(sidecar.parent / "micro.decoder.onnx") in line and why in line
    assert not out.exists()


def test_predict_runs_a_splits_graphs_on_openvino_under_a_hint(micro_split, tmp_path):
    pytest.importorskip("openvino")
    image = DATA / "images" / "coffee_cup.jpg"
    runs = {}
    for name, extra in (("onnxruntime", []), ("openvino", ["--openvino", "f32"])):
        result = CliRunner().invoke(main, ["predict", str(image), "--artifact", str(micro_split),
                                           "--threshold", "0", "-o", str(tmp_path / name), "--quiet", *extra])
        assert result.exit_code == 0, result.output
        runs[name] = json.loads((tmp_path / name / "predictions.json").read_text())
    info = runs["openvino"]["info"]
    assert info["backend"].startswith("openvino-f32-split") and info["precision_hint"] == "f32"
    # Threshold 0 keeps every detection predict makes: the same count from both runtimes.
    counts = {name: [i["detections"] for i in run["images"]] for name, run in runs.items()}
    assert counts["openvino"] == counts["onnxruntime"] and counts["onnxruntime"][0] > 0
