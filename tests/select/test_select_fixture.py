"""`rtdetr-export select` end to end on the trained fixture: every CPU candidate made (exported, calibrated,
verified), timed and scored on 20 val images, and the chosen file written with its selection record."""

from __future__ import annotations

import importlib.util
import json

import pytest
from click.testing import CliRunner

from rtdetr_export.artifact import read_sidecar, sidecar_path
from rtdetr_export.cli import main
from rtdetr_export.eval import EvalOptions, evaluate
from rtdetr_export.weights import load_model
from paths import DATA

FIXTURE = DATA / "fixture"
VAL = FIXTURE / "shapes_val"
IMAGES = 20


@pytest.mark.slow
def test_select_on_the_trained_fixture(tmp_path):
    result = CliRunner().invoke(main, [
        "select", "--model", str(FIXTURE / "rtdetrv2_shapes"), "--coco", str(VAL / "instances_val.json"),
        "--images", str(VAL / "images"), "--limit", str(IMAGES), "--calib-count", "8", "--iters", "2",
        "--warmup", "1", "--threads", "2", "-o", str(tmp_path / "best.onnx"), "--report", str(tmp_path / "report"),
        "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {row["name"]: row for row in report["rows"]}
    expected = ["ort-fp32", "ort-int8", "ov-f32:fp32", "ov-bf16:fp32", "ov-f32:int8", "ov-bf16:int8", "ov-nncf"]
    assert list(rows) == expected
    assert rows["ort-fp32"]["status"] == "ok" and rows["ort-fp32"]["verified"] == "pass (fp32)"
    if importlib.util.find_spec("openvino") is None:
        assert all(rows[name]["status"] == "skipped" for name in expected[2:])

    # The baseline's AP is the PyTorch reference's on the same images, computed by `eval` (the export costs nothing).
    model = load_model(FIXTURE / "rtdetrv2_shapes")
    reference = evaluate([], EvalOptions(str(VAL / "instances_val.json"), str(VAL / "images"), limit=IMAGES), model)
    assert rows["ort-fp32"]["ap"] == pytest.approx(reference.rows[0].metrics.stats["AP"], abs=5e-4)

    chosen = rows[report["chosen"]]
    assert chosen["within_budget"] and chosen["ap_delta_vs_baseline"] >= -0.005
    faster = [r for r in rows.values() if r["status"] == "ok" and r["latency_ms"]["1"]["p50"] <
              chosen["latency_ms"]["1"]["p50"]]
    assert not any(r["within_budget"] for r in faster)
    selection = read_sidecar(sidecar_path(tmp_path / "best.onnx")).selection
    assert selection.chosen == report["chosen"] and [c.name for c in selection.candidates] == expected
    assert {p.name for p in (tmp_path / "report").iterdir()} == {"report.json", "report.md", "report.csv",
                                                                 "latency_vs_ap.png"}
