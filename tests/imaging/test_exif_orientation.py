"""Images are read as viewers show them: a JPEG whose pixels are stored turned, with an EXIF orientation tag
(what phone cameras write), gives the detections of the upright picture, in the upright picture's coordinates.

Each turned JPEG is compared with the same decoded pixels turned upright by hand and saved losslessly, so the two
inputs the model sees are identical and so must be the detections; a looser comparison with the pristine upright
image shows the boxes are where the objects are, not in the stored (sideways) frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import SHAPES_MODEL, SHAPES_VAL
from rtdetr_export.cli import main
from rtdetr_export.imaging import decode_image, iou_matrix, load_image

ORIENTATION = 0x0112
# EXIF orientation -> the turn that makes the stored pixels upright (6: turn 90 degrees clockwise; 8: anticlockwise),
# and its inverse, which makes stored pixels from an upright picture.
TO_UPRIGHT = {6: Image.Transpose.ROTATE_270, 8: Image.Transpose.ROTATE_90}
FROM_UPRIGHT = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
CONFIDENT = 0.7
PAD = 64  # widen the 320x320 val images so that width and height differ and a swap would show


def _upright_source(index: int) -> Image.Image:
    """A val image padded on the right with flat grey: non-square, its annotations unchanged."""
    with Image.open(SHAPES_VAL / "images" / f"{index:06d}.jpg") as image:
        picture = image.convert("RGB")
    wide = Image.new("RGB", (picture.width + PAD, picture.height), (128, 128, 128))
    wide.paste(picture, (0, 0))
    return wide


def _write_turned(upright: Image.Image, orientation: int, jpeg: Path, png: Path) -> None:
    """``jpeg``: pixels stored sideways plus the orientation tag; ``png``: those decoded pixels turned by hand."""
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    upright.transpose(FROM_UPRIGHT[orientation]).save(jpeg, "JPEG", quality=95, exif=exif)
    with Image.open(jpeg) as stored:  # the raw decoded pixels, no orientation applied
        assert stored.getexif()[ORIENTATION] == orientation
        stored.convert("RGB").transpose(TO_UPRIGHT[orientation]).save(png)


def test_load_and_decode_turn_the_pixels_upright(tmp_path):
    upright = _upright_source(1)
    for orientation in TO_UPRIGHT:
        jpeg, png = tmp_path / f"o{orientation}.jpg", tmp_path / f"o{orientation}.png"
        _write_turned(upright, orientation, jpeg, png)
        expected = np.asarray(Image.open(png))
        assert load_image(jpeg).size == upright.size
        assert np.array_equal(np.asarray(load_image(jpeg)), expected)
        assert np.array_equal(np.asarray(decode_image(jpeg.read_bytes())), expected)


def _predict(folder: Path, out: Path) -> dict[str, dict]:
    result = CliRunner().invoke(main, ["predict", str(folder), "--model", str(SHAPES_MODEL), "--threshold", "0.4",
                                       "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "predictions.json").read_text())
    found = {}
    for image in record["images"]:
        mine = [a for a in record["annotations"] if a["image_id"] == image["id"]]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in mine)]).reshape(-1, 4)
        found[Path(image["file_name"]).name] = {"size": (image["width"], image["height"]), "boxes": boxes,
                                                "labels": [a["category_id"] for a in mine],
                                                "scores": np.array([a["score"] for a in mine])}
    return found


def test_predict_reports_upright_detections_for_orientation_6_and_8(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    upright = _upright_source(1)
    upright.save(photos / "upright.png")
    for orientation in TO_UPRIGHT:
        _write_turned(upright, orientation, photos / f"turned{orientation}.jpg", photos / f"by_hand{orientation}.png")
    found = _predict(photos, tmp_path / "out")
    for orientation in TO_UPRIGHT:
        turned, by_hand = found[f"turned{orientation}.jpg"], found[f"by_hand{orientation}.png"]
        assert turned["size"] == by_hand["size"] == upright.size
        assert turned["labels"] == by_hand["labels"]
        np.testing.assert_allclose(turned["boxes"], by_hand["boxes"], atol=1e-3)
        np.testing.assert_allclose(turned["scores"], by_hand["scores"], atol=1e-6)
        # Against the pristine upright image: the JPEG re-encoding moves pixels a little, which moves scores near
        # the threshold, so only its confident detections are looked for, each with the same label in the same place.
        pristine = found["upright.png"]
        confident = np.flatnonzero(pristine["scores"] > CONFIDENT)
        assert len(confident) >= 3  # the trained fixture finds the shapes
        ious = iou_matrix(pristine["boxes"][confident], turned["boxes"])
        same_label = np.equal.outer(np.array(pristine["labels"])[confident], turned["labels"])
        assert (ious * same_label).max(axis=1).min() > 0.9


def _eval_reference(annotations: Path, images: Path) -> dict:
    result = CliRunner().invoke(main, ["eval", "--model", str(SHAPES_MODEL), "--coco", str(annotations),
                                       "--images", str(images), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)["rows"][0]["metrics"]
    return {"per_class": metrics.pop("per_class"), "stats": metrics}


def test_eval_scores_turned_jpegs_like_their_upright_pixels(tmp_path):
    """COCO annotations give the upright width/height and boxes; turned JPEGs score exactly as the upright pixels."""
    data = json.loads((SHAPES_VAL / "instances_val.json").read_text())
    images = data["images"][:6]
    ids = {image["id"] for image in images}
    folders = {kind: tmp_path / kind for kind in ("turned", "by_hand")}
    for folder in folders.values():
        folder.mkdir()
    sets = {kind: [] for kind in folders}
    for n, entry in enumerate(images):
        upright = _upright_source(entry["id"])
        orientation = (6, 8)[n % 2]
        stem = Path(entry["file_name"]).stem
        _write_turned(upright, orientation, folders["turned"] / f"{stem}.jpg", folders["by_hand"] / f"{stem}.png")
        for kind, suffix in (("turned", ".jpg"), ("by_hand", ".png")):
            sets[kind].append({**entry, "file_name": stem + suffix, "width": upright.width, "height": upright.height})
    metrics = {}
    for kind, folder in folders.items():
        annotations = tmp_path / f"{kind}.json"
        annotations.write_text(json.dumps({**data, "images": sets[kind],
                                           "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}))
        metrics[kind] = _eval_reference(annotations, folder)
    assert metrics["by_hand"]["stats"]["AP50"] > 0.5  # real detections on the upright pixels
    assert metrics["turned"]["stats"] == pytest.approx(metrics["by_hand"]["stats"], abs=1e-9)
    assert metrics["turned"]["per_class"] == pytest.approx(metrics["by_hand"]["per_class"], abs=1e-9)
