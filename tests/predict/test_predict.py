"""`rtdetr-export predict`: annotated PNGs and COCO-style JSON that equal the Python API's detections."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from rtdetr_export.backends import OnnxRuntimeRunner
from rtdetr_export.cli import main
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
from rtdetr_export.imaging import load_image, postprocess, preprocess
from rtdetr_export.weights import load_model
from paths import TESTS
from tiers import costly

# One worker runs this module (README: --dist loadgroup): its tests share two verified dynamic-batch exports
# (artifacts).
pytestmark = pytest.mark.xdist_group("predict")

PHOTOS = TESTS / "data" / "images"
PHOTO_NAMES = ["astronaut.jpg", "cat_chelsea.jpg", "coffee_cup.jpg"]
THRESHOLD = 0.3


@pytest.fixture(scope="module")
@costly
def artifacts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    model = load_model(preset="tiny", method="discrete")
    out = {}
    for head in ("raw", "detections"):
        out[head] = folder / f"tiny_{head}.onnx"
        export_onnx(model, out[head], OnnxExportOptions(head=head, dynamic_batch=True, top_k=100))
    return out


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTO_NAMES:
        shutil.copy(PHOTOS / name, folder / name)
    return folder


def _api_detections(path: Path, image_path: Path, head: str):
    """Detections computed directly with the runner and the imaging functions, not through predict."""
    image = load_image(image_path)
    batch = preprocess(image, (320, 320))
    with OnnxRuntimeRunner(path) as runner:
        if head == "raw":
            out = runner.infer({"images": batch})
            found = postprocess(out["logits"], out["pred_boxes"], [(image.height, image.width)], THRESHOLD)[0]
            return found.labels, found.scores, found.boxes
        out = runner.infer({"images": batch,
                            "orig_target_sizes": np.array([[image.width, image.height]], dtype=np.int64)})
        keep = out["scores"][0] > THRESHOLD
        return out["labels"][0][keep], out["scores"][0][keep], out["boxes"][0][keep]


def _invoke(*args):
    return CliRunner().invoke(main, ["predict", *map(str, args)])


@pytest.mark.parametrize("head", ["raw", "detections"])
def test_json_equals_the_python_api_and_pngs_are_annotated(artifacts, photos, tmp_path, head):
    out = tmp_path / "out"
    result = _invoke(photos, "--artifact", artifacts[head], "--threshold", THRESHOLD, "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "predictions.json").read_text())
    assert [Path(i["file_name"]).name for i in record["images"]] == PHOTO_NAMES
    assert record["failures"] == [] and record["info"]["threshold"] == THRESHOLD
    assert record["categories"][0] == {"id": 0, "name": "person"}
    for image in record["images"]:
        labels, scores, boxes = _api_detections(artifacts[head], Path(image["file_name"]), head)
        mine = [a for a in record["annotations"] if a["image_id"] == image["id"]]
        assert len(mine) == len(labels) == image["detections"] > 0
        assert [a["category_id"] for a in mine] == labels.tolist()
        assert [a["category_name"] for a in mine] == [record["categories"][i]["name"] for i in labels]
        np.testing.assert_allclose([a["score"] for a in mine], scores, rtol=0, atol=1e-6)
        xywh = np.array([a["bbox"] for a in mine])
        np.testing.assert_allclose(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1), boxes, atol=1e-3)

        original = Image.open(image["file_name"])
        drawn = Image.open(out / image["annotated"])
        assert drawn.format == "PNG" and drawn.size == original.size
        changed = np.abs(np.asarray(drawn.convert("RGB"), np.int16) - np.asarray(original.convert("RGB"), np.int16))
        assert (changed.max(-1) > 40).mean() > 0.001, "no boxes were drawn"


def test_show_reference_marks_agreement_with_pytorch(artifacts, photos, tmp_path):
    out = tmp_path / "out"
    result = _invoke(photos / "cat_chelsea.jpg", "--artifact", artifacts["raw"], "--threshold", THRESHOLD,
                     "--show-reference", "-o", out, "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["info"]["reference"].startswith("torch (random")
    agreement = record["images"][0]["reference"]
    # FP32 ONNX and PyTorch agree on every detection (same labels, IoU >= 0.5).
    assert agreement["agreeing"] == agreement["detections"] == record["images"][0]["detections"] > 0
    assert agreement["not_in_reference"] == agreement["missed"] == 0
    assert all(a["agrees_with_reference"] for a in record["annotations"])


def test_the_pytorch_model_predicts_without_an_artifact(photos, tmp_path):
    out = tmp_path / "out"
    result = _invoke(photos / "coffee_cup.jpg", "--preset", "tiny", "--threshold", THRESHOLD, "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    record = json.loads((out / "predictions.json").read_text())
    assert record["info"]["backend"].startswith("torch") and record["images"][0]["detections"] > 0


def test_bad_images_get_one_line_each_and_the_rest_are_processed(artifacts, photos, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes((PHOTOS / "coffee_cup.jpg").read_bytes()[:200])
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    result = _invoke(photos / "astronaut.jpg", tmp_path / "missing.jpg", corrupt, text, empty,
                     photos / "cat_chelsea.jpg", "--artifact", artifacts["raw"], "--threshold", THRESHOLD,
                     "-o", out, "--quiet")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 4 and all(line.startswith("error: ") for line in errors)
    for fragment in ("missing.jpg", "corrupt.jpg", "notes.txt", "empty"):
        assert sum(fragment in line for line in errors) == 1, fragment
    record = json.loads((out / "predictions.json").read_text())
    assert [Path(i["file_name"]).name for i in record["images"]] == ["astronaut.jpg", "cat_chelsea.jpg"]
    assert len(record["failures"]) == 4
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.png", "cat_chelsea.png", "predictions.json"]


def test_existing_outputs_need_force(artifacts, photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "cat_chelsea.png").write_bytes(b"mine")
    result = _invoke(photos / "cat_chelsea.jpg", "--artifact", artifacts["raw"], "-o", out)
    assert result.exit_code != 0 and "--force" in result.output and "Traceback" not in result.output
    assert (out / "cat_chelsea.png").read_bytes() == b"mine" and not (out / "predictions.json").exists()
    assert _invoke(photos / "cat_chelsea.jpg", "--artifact", artifacts["raw"], "-o", out, "--force",
                   "--quiet").exit_code == 0
    assert Image.open(out / "cat_chelsea.png").format == "PNG"


@pytest.mark.parametrize("args, message", [
    (["--show-reference", "--preset", "tiny"], "--artifact"),
    (["--artifact", "{raw}", "--preset", "tiny"], "come from the artifact"),
    (["--artifact", "{bogus}"], "not an ONNX file"),
    (["--artifact", "{raw}", "--threshold", "1.5"], "threshold"),
])
def test_bad_options_give_one_line_errors(artifacts, photos, tmp_path, args, message):
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"nope")
    args = [a.format(raw=artifacts["raw"], bogus=bogus) for a in args]
    result = _invoke(photos / "cat_chelsea.jpg", *args, "-o", tmp_path / "out")
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], lines
