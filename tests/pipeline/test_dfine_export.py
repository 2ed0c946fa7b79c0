"""D-FINE through the command line: export a preset, and verify the file later from its sidecar alone."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rtdetr_export.cli import main


@pytest.mark.slow  # one full export with onnxslim and verification (~30 s), then a verification (~10 s)
def test_a_d_fine_preset_exports_from_the_cli_and_verifies_from_its_record(tmp_path):
    out = tmp_path / "dfine_n.onnx"
    result = CliRunner().invoke(main, ["onnx", "--preset", "dfine_n", "--image-size", "320", "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["model"]["family"] == "dfine" and sidecar["model"]["config"]["size"] == "N"
    assert sidecar["verification"]["passed"] is True
    # No --model: the reference is rebuilt from the record (a DFine with the same seeded weights).
    again = CliRunner().invoke(main, ["verify", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["passed"] is True


@pytest.mark.slow  # one FP16 export with calibration of the FP16 plan and verification (~40 s)
def test_a_d_fine_fp16_export_passes_its_verification(tmp_path):
    out = tmp_path / "dfine_n_fp16.onnx"
    result = CliRunner().invoke(main, ["onnx", "--preset", "dfine_n", "--image-size", "320", "--precision", "fp16",
                                       "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["verification"]["passed"] is True and sidecar["model"]["family"] == "dfine"
