"""`rtdetr-export eval`: COCO metrics from a maintained evaluator, checked against an independent one, and the
artifact rows measured against the PyTorch reference on the trained fixture."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rtdetr_export.cli import main
from rtdetr_export.eval import STAT_NAMES, coco_metrics, read_coco
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
from paths import TESTS
from micro import micro_model

# One worker runs this module (README: --dist loadgroup): its tests share one export of a random-weight model with the
# dataset's classes (random_shapes_onnx).
pytestmark = pytest.mark.xdist_group("eval")

VAL = TESTS / "data" / "fixture" / "shapes_val"
ANNOTATIONS = VAL / "instances_val.json"


def _subset(count: int) -> dict:
    data = json.loads(ANNOTATIONS.read_text())
    images = data["images"][:count]
    ids = {image["id"] for image in images}
    return {**data, "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}


def _names(data: dict) -> dict[int, str]:
    return {c["id"]: c["name"] for c in data["categories"]}


def _ground_truth_as_predictions(data: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 1.0}
            for a in data["annotations"]]


def test_ground_truth_boxes_as_predictions_score_ap_1():
    data = _subset(60)
    metrics = coco_metrics(data, _ground_truth_as_predictions(data), _names(data))
    assert metrics.stats["AP"] == pytest.approx(1.0) and metrics.stats["AP50"] == pytest.approx(1.0)
    assert metrics.stats["AR100"] == pytest.approx(1.0)
    assert all(ap == pytest.approx(1.0) for ap in metrics.per_class.values())


def test_a_known_perturbation_scores_strictly_lower():
    data = _subset(60)
    perfect = coco_metrics(data, _ground_truth_as_predictions(data), _names(data)).stats
    shifted = _ground_truth_as_predictions(data)
    for prediction in shifted:  # every box moved right by 20% of its width: IoU 0.67, below 0.70..0.95
        prediction["bbox"][0] += 0.2 * prediction["bbox"][2]
    moved = coco_metrics(data, shifted, _names(data)).stats
    assert moved["AP"] < perfect["AP"] and moved["AP75"] < perfect["AP75"]
    assert moved["AP50"] == pytest.approx(1.0)  # still a match at IoU 0.5


def _noisy_predictions(data: dict, seed: int = 0) -> list[dict]:
    """Jittered true boxes with random scores, some wrong labels and some false positives."""
    rng = np.random.default_rng(seed)
    categories = [c["id"] for c in data["categories"]]
    out = []
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
        label = a["category_id"] if rng.random() > 0.1 else int(rng.choice(categories))
        out.append({"image_id": a["image_id"], "category_id": label, "score": float(rng.random()),
                    "bbox": [float(x + jitter[0]), float(y + jitter[1]), float(max(1, w + jitter[2])),
                             float(max(1, h + jitter[3]))]})
    for image in data["images"]:
        for _ in range(3):
            x, y = rng.uniform(0, 280, 2)
            out.append({"image_id": image["id"], "category_id": int(rng.choice(categories)), "score": float(rng.random()),
                        "bbox": [float(x), float(y), float(rng.uniform(5, 60)), float(rng.uniform(5, 60))]})
    return out


def test_ap_equals_pycocotools_on_the_same_predictions():
    pycocotools = pytest.importorskip("pycocotools.cocoeval")
    from pycocotools.coco import COCO

    data = _subset(100)
    predictions = _noisy_predictions(data)
    ours = coco_metrics(data, predictions, _names(data)).stats
    gt = COCO()
    gt.dataset = copy.deepcopy(data)
    gt.createIndex()
    evaluator = pycocotools.COCOeval(gt, gt.loadRes(copy.deepcopy(predictions)), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert 0.2 < ours["AP"] < 0.9  # a run with real matches and misses, not a degenerate one
    for name, theirs in zip(STAT_NAMES, evaluator.stats):
        assert ours[name] == pytest.approx(float(theirs), abs=1e-6), name


# -- the command, on a model with the dataset's classes ---------------------------------------------------------------
CLASSES = [c["name"] for c in json.loads(ANNOTATIONS.read_text())["categories"]]


@pytest.fixture(scope="module")
def random_shapes_onnx(tmp_path_factory):
    """The micro random-weight model (tests/micro.py) with the dataset's classes, exported unsimplified and
    unverified (the command's own work is under test here; its provenance rebuilds the reference)."""
    model = micro_model(num_classes=len(CLASSES), id2label=dict(enumerate(CLASSES)))
    path = tmp_path_factory.mktemp("eval") / "shapes_random.onnx"
    export_onnx(model, path, OnnxExportOptions(dynamic_batch=True, verify=False, simplify=False))
    return path


def _eval(*args):
    return CliRunner().invoke(main, ["eval", *map(str, args)])


def test_eval_writes_a_report_folder(random_shapes_onnx, tmp_path):
    pytest.importorskip("openvino")
    result = _eval(random_shapes_onnx, "--coco", ANNOTATIONS, "--images", VAL / "images", "--limit", 4,
                   "--batch", 2, "--openvino", "f32", "--report", tmp_path / "report", "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert [row["source"] for row in report["rows"]] == ["reference"] + [str(random_shapes_onnx)] * 2
    assert [row["runtime"] for row in report["rows"]] == ["torch", "onnxruntime", "openvino-f32"]
    assert report["dataset"]["images"] == 4 and set(report["rows"][0]["metrics"]["per_class"]) == set(CLASSES)
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"report.json", "report.md", "report.csv",
                                                                 "pr_curves.png"}


def _copy_val(tmp_path: Path, count: int) -> tuple[Path, Path]:
    data = _subset(count)
    images = tmp_path / "images"
    images.mkdir()
    for image in data["images"]:
        shutil.copy(VAL / "images" / image["file_name"], images)
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(data))
    return annotations, images


def test_missing_images_are_skipped_counted_and_fail_the_run(random_shapes_onnx, tmp_path):
    annotations, images = _copy_val(tmp_path, 4)
    missing = sorted(images.iterdir())[:2]
    for path in missing:
        path.unlink()
    result = _eval(random_shapes_onnx, "--coco", annotations, "--images", images, "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    for path in missing:
        assert f"{path}: image missing, skipped" in result.output
    assert "2 annotated image(s) missing" in result.output


@pytest.mark.parametrize("case, message", [
    ("not-json", "not JSON"),
    ("not-coco", "not COCO detection annotations"),
    ("unknown-category", "the model does not know the dataset's categories 'giraffe'"),
    ("empty-folder", "is empty"),
])
def test_bad_input_is_one_line(random_shapes_onnx, tmp_path, case, message):
    annotations, images = _copy_val(tmp_path, 2)
    if case == "not-json":
        annotations.write_text("images: [")
    elif case == "not-coco":
        annotations.write_text(json.dumps({"images": []}))
    elif case == "unknown-category":
        data = json.loads(annotations.read_text())
        data["categories"].append({"id": 99, "name": "giraffe"})
        annotations.write_text(json.dumps(data))
    else:
        shutil.rmtree(images)
        images.mkdir()
    result = _eval(random_shapes_onnx, "--coco", annotations, "--images", images)
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], result.output


def test_read_coco_fills_area_and_iscrowd(tmp_path):
    annotations, images = _copy_val(tmp_path, 1)
    data = json.loads(annotations.read_text())
    for a in data["annotations"]:
        del a["area"], a["iscrowd"]
    annotations.write_text(json.dumps(data))
    dataset = read_coco(annotations, images)
    assert all(a["iscrowd"] == 0 and a["area"] == a["bbox"][2] * a["bbox"][3] for a in dataset.data["annotations"])
