"""An INT8 export given --calib-images is judged on the images calibration did not read, not on synthetic scenes,
and its record says so (issue 25).

The trained fixture is a synthetic-shapes model: its own domain is the training generator's images
(benchmarks/fixture/make_dataset.py), and verification's synthetic scenes (imaging/inputs.py) are off its domain.
Measured on it (docs/precision.md, "What judges it"), no cheap INT8 recipe is refused by synthetic scenes and
accepted by its own images (the issue met such a file on another model, not in this repository): here the
own-domain judgement is the stricter one, lower on labels and higher on score differences, and it refuses one
file that synthetic scenes accept. The tests prove the held-out images are what judged the file, that the record
names them, that `verify` judges on them again, and that the two judgements differ, in numbers and in one verdict.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import SHAPES_DSP, SHAPES_MODEL
from paths import ROOT
from rtdetr_export.artifact import open_artifact
from rtdetr_export.cli import main
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
from rtdetr_export.precision import PrecisionOptions
from rtdetr_export.verify import VerificationPlan, choose_inputs, verify_onnx
from rtdetr_export.weights import load_model
from tiers import costly

pytestmark = pytest.mark.xdist_group("user_images")

CALIBRATION, HELD_OUT = 16, 8


@pytest.fixture(scope="module")
def own_images(tmp_path_factory) -> Path:
    """24 training-generator images (seed 7, never the val split): the fixture's own domain."""
    folder = tmp_path_factory.mktemp("own")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fixture" / "make_dataset.py"), "--split", "train",
                    "--count", str(CALIBRATION + HELD_OUT), "--seed", "7", "--out", str(folder / "calib")],
                   check=True, capture_output=True)
    return folder / "calib" / "images"


@pytest.fixture(scope="module")
@costly
def int8_on_own_images(own_images, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """The trained fixture in INT8 (TensorRT layout, minmax, dynamic batch), calibrated on the first 16 of the 24
    images and verified at export on the other 8; its notes."""
    images = own_images
    notes: list[str] = []
    path = tmp_path_factory.mktemp("int8") / "shapes_int8.onnx"
    export_onnx(load_model(SHAPES_MODEL), path, OnnxExportOptions(
        dynamic_batch=True, precision=PrecisionOptions("int8", str(images), CALIBRATION)), log=notes.append)
    return path, images, notes


def test_the_sidecar_says_the_held_out_images_judged_the_int8_file(int8_on_own_images):
    path, images, notes = int8_on_own_images
    verification = json.loads(path.with_suffix(".json").read_text())["verification"]
    assert verification["passed"] and verification["precision"] == "int8"
    # batch 1 then batch 4: five of the eight images calibration did not read
    assert verification["inputs"] == (f"user images: {images} (5 held out of 24; calibration read the first 16 by "
                                      "file name)")
    assert verification["input_images"] == {"folder": str(images), "calibration": 16, "total": 24, "used": 5}
    assert not any("synthetic" in note for note in notes)


def test_own_images_and_synthetic_scenes_judge_the_same_file_differently(int8_on_own_images):
    path, _, _ = int8_on_own_images
    record = open_artifact(path)
    model = load_model(SHAPES_MODEL)
    synthetic = verify_onnx(model, path, VerificationPlan.for_graph(record.graph_options(), (320, 320),
                                                                    choose_inputs()), "int8")
    own = record.verification
    assert synthetic.inputs.synthetic and own.inputs.held_out
    values = [{name: check.value for name, check in run.outputs.items()} for run in own.runs]
    assert values != [{name: check.value for name, check in run.outputs.items()} for run in synthetic.runs]


def test_verify_judges_again_on_the_recorded_held_out_images_with_the_same_numbers(int8_on_own_images):
    path, images, _ = int8_on_own_images
    result = CliRunner().invoke(main, ["verify", str(path), "--model", str(SHAPES_MODEL), "--json"])
    assert result.exit_code == 0, result.output
    again = json.loads(result.stdout)
    recorded = json.loads(path.with_suffix(".json").read_text())["verification"]
    assert again["input_images"] == recorded["input_images"]
    assert again["runs"] == recorded["runs"]  # same images, same file, same reference: the same judgement


@pytest.mark.slow
def test_a_file_synthetic_scenes_accept_is_refused_by_the_held_out_images(own_images, tmp_path):
    """The discrete fine-tune, INT8 percentile, calibrated on the same 16 images: on synthetic scenes it reads
    within every INT8 limit (worst mean score difference 0.015 <= 0.025); on the held-out images one image's
    detections move in score by 0.035 on average (measured on a 2-core AMD EPYC, docs/precision.md). The
    judgement on the user's images is the one an export given --calib-images now makes, and it refuses."""
    model = load_model(SHAPES_DSP)
    path = tmp_path / "dsp_int8_percentile.onnx"
    precision = PrecisionOptions("int8", str(own_images), CALIBRATION, "percentile")
    export_onnx(model, path, OnnxExportOptions(dynamic_batch=True, verify=False, precision=precision))
    options = open_artifact(path).graph_options()
    synthetic = verify_onnx(model, path, VerificationPlan.for_graph(options, (320, 320), choose_inputs()), "int8")
    held_out = OnnxExportOptions(dynamic_batch=True, precision=precision).verification_inputs()
    own = verify_onnx(model, path, VerificationPlan.for_graph(options, (320, 320), held_out), "int8")
    assert synthetic.passed, synthetic.failures
    assert held_out.held_out and not own.passed
    assert any(failure.startswith("scores at batch 1") for failure in own.failures), own.failures
