"""DEIMv2 through the command line: export a preset with dynamic batch or size, and verify the file later from its
sidecar alone (the reference is rebuilt as a Deimv2 from the record's ``deimv2`` family)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rtdetr_export.cli import main


@pytest.mark.slow  # two exports with onnxslim and verification (~25 s each), then two verifications
@pytest.mark.parametrize("args", [["--dynamic-batch"],
                                  ["--method", "discrete", "--dynamic-size", "--min-size", "320", "--opt-size", "320",
                                   "--max-size", "640"]], ids=["dynamic-batch", "discrete-dynamic-size"])
def test_a_lite_deimv2_preset_exports_dynamically_and_verifies_from_its_record(args, tmp_path):
    out = tmp_path / "deimv2_atto.onnx"
    result = CliRunner().invoke(main, ["onnx", "--preset", "deimv2_atto", *args, "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["model"]["family"] == "deimv2" and sidecar["model"]["config"]["size"] == "Atto"
    assert sidecar["verification"]["passed"] is True
    again = CliRunner().invoke(main, ["verify", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["passed"] is True


@pytest.mark.slow  # one FP16 export with calibration of the FP16 plan and verification (~25 s)
def test_a_lite_deimv2_fp16_export_passes_its_verification(tmp_path):
    out = tmp_path / "deimv2_atto_fp16.onnx"
    result = CliRunner().invoke(main, ["onnx", "--preset", "deimv2_atto", "--precision", "fp16", "-o", str(out),
                                       "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.with_suffix(".json").read_text())["verification"]["passed"] is True
