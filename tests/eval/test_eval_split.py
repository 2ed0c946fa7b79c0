"""`rtdetr-export eval` on a split artifact: the COCO metrics of the single ONNX file of the same export (the trained
fixture), in the same report, and a one-line error, with no report written, for a split whose files do not belong
together."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rtdetr_export.cli import main
from rtdetr_export.eval import STAT_NAMES
from paths import DATA
from split_cases import one_line_error

VAL = DATA / "fixture" / "shapes_val"
MODEL = DATA / "fixture" / "rtdetrv2_shapes"
REPORTED = 1e-4  # the last digit report.md prints of every metric


@pytest.mark.slow
def test_eval_of_a_split_equals_the_single_files_ap(shapes_split_and_single, tmp_path):
    split, single = shapes_split_and_single
    result = CliRunner().invoke(main, ["eval", str(split), str(single), "--model", str(MODEL), "--coco",
                                       str(VAL / "instances_val.json"), "--images", str(VAL / "images"), "--limit",
                                       "40", "--batch", "4", "--report", str(tmp_path / "report"), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    reference, ours, theirs = report["rows"]
    assert (ours["source"], theirs["source"]) == (str(split), str(single))
    assert (ours["runtime"], theirs["runtime"]) == ("onnxruntime-split", "onnxruntime")
    assert ours.keys() == theirs.keys() and ours["metrics"].keys() == theirs["metrics"].keys()
    # The same detections up to float32 noise: every metric the report prints (4 decimals) is the same number.
    # The noise may only swap near-tied scores, which moves AP in the 7th decimal (measured on all 200 val images:
    # AP 0.63792788 split, 0.63792801 single file), so "the same" is within half the report's last digit.
    for name in theirs["metrics"]:
        if name in STAT_NAMES:
            assert ours["metrics"][name] == pytest.approx(theirs["metrics"][name], abs=REPORTED / 2), name
    for name, ap in theirs["metrics"]["per_class"].items():
        assert ours["metrics"]["per_class"][name] == pytest.approx(ap, abs=REPORTED / 2), name
    assert ours["metrics"]["AP50"] > 0.5  # the trained fixture finds its shapes: not a vacuous equality
    assert set(STAT_NAMES) <= set(ours["metrics"]) and reference["source"] == "reference"


@pytest.mark.parametrize("case", ["missing", "mixed"])
def test_a_split_whose_files_do_not_belong_together_is_one_line_and_no_report_is_written(broken_split, tmp_path,
                                                                                        case):
    sidecar, why = broken_split[case]
    report = tmp_path / "report"
    result = CliRunner().invoke(main, ["eval", str(sidecar.parent / "micro.encoder.onnx"), "--coco",
                                       str(VAL / "instances_val.json"), "--images", str(VAL / "images"), "--report",
                                       str(report)])
    assert result.exit_code != 0
    line = one_line_error(result.output)
    assert str(sidecar.parent / "micro.decoder.onnx") in line and why in line
    assert not report.exists()
