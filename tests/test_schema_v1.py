"""Artifacts written by the previous version (sidecar schema 1, tests/data/schema_v1/) still read and verify.

micro_raw_v1.onnx/.json were exported by rtdetr-export before the typed results (commit c64ae5f): a tiny-shaped
model narrowed to 0.4 M parameters at 128 px, seeded random weights, raw head, dynamic batch.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from rtdetr_export.artifact import read_provenance
from rtdetr_export.cli import main
from rtdetr_export.pipeline import describe_onnx, verify_artifact
from rtdetr_export.verify import Verification

V1 = Path(__file__).parent / "data" / "schema_v1" / "micro_raw_v1.onnx"


def test_the_committed_example_is_schema_1():
    assert read_provenance(V1)["schema_version"] == 1
    assert json.loads(V1.with_suffix(".json").read_text())["schema_version"] == 1


def test_a_schema_1_verification_reads_as_typed_results():
    record = read_provenance(V1)["verification"]
    verification = Verification.from_json(record)
    assert verification.passed and verification.batches == [1, 4]
    logits = verification.runs[0].outputs["logits"]
    assert logits.metric == "max_abs_unflipped" and logits.value == record["runs"][0]["outputs"]["logits"]["max_abs"]
    assert logits.stats["max_abs"] == logits.value and logits.threshold == 1e-4
    # Everything the old record held is still there when it is written back, plus the metric names.
    again = verification.to_json()
    for old_run, new_run in zip(record["runs"], again["runs"]):
        for name, entry in old_run["outputs"].items():
            assert entry.items() <= new_run["outputs"][name].items()


def test_inspect_shows_a_schema_1_file(tmp_path):
    description = describe_onnx(V1)
    assert description.provenance["verification"]["passed"] is True
    result = CliRunner().invoke(main, ["inspect", str(V1)])
    assert result.exit_code == 0, result.output
    assert "verification  PASSED" in result.output and "max_abs_unflipped" in result.output


def test_verify_passes_on_a_schema_1_file(tmp_path):
    for suffix in (".onnx", ".json"):
        shutil.copy(V1.with_suffix(suffix), tmp_path / f"old{suffix}")
    assert verify_artifact(tmp_path / "old.onnx").passed
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "old.onnx"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["passed"] is True
