"""What verification judges on (verify/inputs.py): --images, else the part of --calib-images that calibration did
not read, else what judged the artifact when it was made (while its folder is there), else synthetic scenes with a
note; and the record says which (``inputs`` and ``input_images``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from micro import MICRO_SIZE, micro_model
from rtdetr_export.artifact import GraphOptions, PrecisionOptions, Verification, VerificationInputs, open_artifact
from rtdetr_export.cli import main
from rtdetr_export.imaging.inputs import calibration_split
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
from rtdetr_export.precision.calibration import calibration_set
from rtdetr_export.verify import VerificationPlan, choose_inputs
from tiers import costly


def _folder(path: Path, count: int, size: int = 24) -> Path:
    """``count`` flat images named img00.png ... whose grey level (10 * index) says which one a batch holds."""
    path.mkdir()
    for i in range(count):
        Image.new("RGB", (size, size), (10 * i,) * 3).save(path / f"img{i:02d}.png")
    return path


def _levels(feeds) -> list[int]:
    """The grey level of each image in the feeds (the images are flat, so the mean is exact)."""
    return [round(float(image.mean()) * 255) for feed in feeds for image in feed["images"]]


# -- the split -----------------------------------------------------------------------------------------------------
def test_calibration_reads_the_first_images_by_name_and_the_rest_are_held_out(tmp_path):
    folder = _folder(tmp_path / "calib", 6)
    (folder / "notes.txt").write_text("not an image\n")
    calibrate, held = calibration_split(folder, 4)
    assert [p.name for p in calibrate] == ["img00.png", "img01.png", "img02.png", "img03.png"]
    assert [p.name for p in held] == ["img04.png", "img05.png"]
    assert calibration_set((16, 16), 4, folder).files == [p.name for p in calibrate]  # the same split


def test_a_plan_on_held_out_images_judges_only_them_each_once_and_records_how_many(tmp_path):
    folder = _folder(tmp_path / "calib", 9)
    inputs = choose_inputs(calib_images=folder, calib_count=4, precision="int8")
    assert inputs == VerificationInputs(str(folder), 4, 9)
    plan = VerificationPlan.for_graph(GraphOptions(dynamic_batch=True), (16, 16), inputs)  # batch 1, then 4
    assert _levels(plan.feeds()) == [40, 50, 60, 70, 80]  # img04 .. img08: none of the four calibration read
    recorded = plan.recorded_inputs()
    assert recorded.used == 5 and str(recorded) == \
        f"user images: {folder} (5 held out of 9; calibration read the first 4 by file name)"


def test_too_few_held_out_images_are_cycled_and_counted_once(tmp_path):
    folder = _folder(tmp_path / "calib", 5)
    plan = VerificationPlan.for_graph(GraphOptions(dynamic_batch=True), (16, 16), choose_inputs(None, folder, 3))
    assert _levels(plan.feeds()) == [30, 40, 30, 40, 30]
    assert plan.recorded_inputs().used == 2


# -- the rule ------------------------------------------------------------------------------------------------------
def test_explicit_images_win_over_the_calibration_folder_and_the_record(tmp_path):
    mine, calib = _folder(tmp_path / "mine", 3), _folder(tmp_path / "calib", 20)
    recorded = VerificationInputs(str(calib), 16, 20, 4)
    assert choose_inputs(mine, calib, 16, recorded, "int8") == VerificationInputs(str(mine), None, 3)


def test_a_folder_too_small_to_hold_out_verifies_on_synthetic_scenes_and_says_what_to_do(tmp_path):
    calib = _folder(tmp_path / "calib", 16)
    notes: list[str] = []
    assert choose_inputs(None, calib, 16, precision="int8", log=notes.append).synthetic
    assert len(notes) == 1 and "none is held out" in notes[0]
    assert all(flag in notes[0] for flag in ("--calib-count", "--images"))


def test_without_any_image_reduced_precision_notes_synthetic_scenes_and_fp32_does_not():
    notes: list[str] = []
    assert choose_inputs(precision="fp16", log=notes.append).synthetic
    assert len(notes) == 1 and "synthetic scenes" in notes[0] and "--images" in notes[0] \
        and "--calib-images" in notes[0]
    assert choose_inputs(precision="fp32", log=notes.append).synthetic and len(notes) == 1


def test_an_export_asks_the_rule_with_its_own_flags(tmp_path):
    calib, mine = _folder(tmp_path / "calib", 6), _folder(tmp_path / "mine", 2)
    int8 = PrecisionOptions("int8", str(calib), calib_count=4)
    assert OnnxExportOptions(precision=int8).verification_inputs() == VerificationInputs(str(calib), 4, 6)
    assert OnnxExportOptions(images=str(mine), precision=int8).verification_inputs() == \
        VerificationInputs(str(mine), None, 2)
    notes: list[str] = []
    assert OnnxExportOptions(precision=PrecisionOptions("int8")).verification_inputs(notes.append).synthetic
    assert len(notes) == 1 and "synthetic scenes" in notes[0]


def test_recorded_inputs_are_used_again_while_their_folder_is_there(tmp_path):
    calib = _folder(tmp_path / "calib", 20)
    notes: list[str] = []
    again = choose_inputs(recorded=VerificationInputs(str(calib), 16, 20, 4), precision="int8", log=notes.append)
    assert again == VerificationInputs(str(calib), 16, 20) and notes == []
    shutil.rmtree(calib)
    assert choose_inputs(recorded=VerificationInputs(str(calib), 16, 20, 4), log=notes.append).synthetic
    assert len(notes) == 1 and str(calib) in notes[0] and "synthetic scenes" in notes[0]


# -- the record ----------------------------------------------------------------------------------------------------
def test_the_record_keeps_the_sentence_and_the_fields_and_reads_older_records():
    held = VerificationInputs("calib", 16, 24, 5)
    data = Verification("raw", [], {}, inputs=held).to_json()
    assert data["inputs"] == "user images: calib (5 held out of 24; calibration read the first 16 by file name)"
    assert data["input_images"] == {"folder": "calib", "calibration": 16, "total": 24, "used": 5}
    assert Verification.from_json(json.loads(json.dumps(data))).inputs == held
    synthetic = Verification("raw", [], {}).to_json()
    assert synthetic["inputs"] == "synthetic" and "input_images" not in synthetic
    assert Verification.from_json({"inputs": "synthetic"}).inputs.synthetic
    assert Verification.from_json({}).inputs.synthetic  # before the field existed: synthetic was the only default
    assert Verification.from_json({"inputs": "photos/"}).inputs == VerificationInputs("photos/")  # an old --images


# -- end to end on the micro model ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
@costly
def micro_fp16_on_held_out(tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """The micro model in FP16, calibrated on 2 of 5 images; its export's notes."""
    root = tmp_path_factory.mktemp("held")
    calib = _folder(root / "calib", 5, size=MICRO_SIZE)
    for i, path in enumerate(sorted(calib.iterdir())):  # scenes, not flat grey: the detector sees edges
        rng = np.random.default_rng(i)
        pixels = np.full((MICRO_SIZE, MICRO_SIZE, 3), 10 * i, np.uint8)
        for _ in range(4):
            y, x = rng.integers(0, MICRO_SIZE - 32, 2)
            pixels[y:y + 32, x:x + 32] = rng.integers(0, 255, 3)
        Image.fromarray(pixels).save(path)
    notes: list[str] = []
    out = root / "micro_fp16.onnx"
    export_onnx(micro_model(), out, OnnxExportOptions(
        dynamic_batch=True, simplify=False, precision=PrecisionOptions("fp16", str(calib), calib_count=2)),
        log=notes.append)
    return out, calib, notes


def test_an_export_given_calibration_images_is_verified_on_their_held_out_part(micro_fp16_on_held_out):
    out, calib, notes = micro_fp16_on_held_out
    sidecar = json.loads(out.with_suffix(".json").read_text())["verification"]
    assert sidecar["inputs"] == f"user images: {calib} (3 held out of 5; calibration read the first 2 by file name)"
    assert sidecar["input_images"] == {"folder": str(calib), "calibration": 2, "total": 5, "used": 3}
    assert open_artifact(out).verification.inputs.held_out
    assert not any("synthetic" in note for note in notes)
    assert any(f"on user images: {calib}" in note for note in notes)  # the progress line names them


def test_verify_judges_again_on_the_recorded_images_then_on_synthetic_scenes_once_they_are_gone(
        micro_fp16_on_held_out, tmp_path):
    out, calib, _ = micro_fp16_on_held_out
    copy = tmp_path / out.name
    shutil.copy(out, copy)
    shutil.copy(out.with_suffix(".json"), copy.with_suffix(".json"))
    again = CliRunner().invoke(main, ["verify", str(copy), "--json"])
    assert json.loads(again.stdout)["input_images"]["folder"] == str(calib), again.output
    moved = calib.with_name("moved")
    calib.rename(moved)
    try:
        gone = CliRunner().invoke(main, ["verify", str(copy)])
    finally:
        moved.rename(calib)
    assert "are not there any more: verifying on synthetic scenes" in gone.stderr
    assert "(fp16, synthetic inputs)" in gone.stdout
