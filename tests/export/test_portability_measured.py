"""Measured portability: the docs, the package data and inspect all show what benchmarks/portability.py wrote.

The measurements themselves need OpenVINO, pnnx/ncnn and TensorFlow/onnx2tf (benchmarks/run_portability.sh);
these tests read the committed results and need none of them. The one live check at the end runs only where
openvino is installed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rtdetr_export.cli import main
from rtdetr_export.export import portability
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
from rtdetr_export.weights import load_model
from paths import ROOT



def _script():
    spec = importlib.util.spec_from_file_location("portability_benchmark", ROOT / "benchmarks" / "portability.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script():
    return _script()


@pytest.fixture(scope="module")
def results(script):
    return json.loads(script.RESULT_JSON.read_text())


def test_docs_section_is_the_scripts_rendering_of_the_committed_json(script, results):
    rendered = script.matrix_markdown(results)
    assert script.docs_section(script.DOCS.read_text()) == rendered, \
        "docs/portability.md is stale: run `python benchmarks/portability.py --render-only`"
    assert script.RESULT_MD.read_text() == "# Measured portability\n\n" + rendered


def test_package_data_is_the_committed_json(script, results):
    assert script.PACKAGE_JSON.read_bytes() == script.RESULT_JSON.read_bytes(), \
        "rtdetr_export/export/portability_measured.json differs: run `python benchmarks/portability.py --render-only`"
    assert set(portability.MEASURED) == {(row["target"], portability.row_sampler(row)) for row in results["results"]}
    assert portability.MEASURED_SOURCE["date"] == results["date"]
    for row in results["results"]:
        entry = portability.MEASURED[(row["target"], portability.row_sampler(row))]
        assert (entry["converts"], entry["runs"], entry["parity"]) == (row["converts"], row["runs"], row.get("parity"))


def test_results_cover_both_methods_on_openvino_and_an_edge_converter(results):
    keys = {(row["runtime"], row["method"]) for row in results["results"]}
    for runtime in ("onnxruntime", "openvino", "ncnn", "litert"):
        assert {(runtime, "discrete"), (runtime, "default")} <= keys, runtime
    for row in results["results"]:
        assert row["runs"] or row["error"]["first_line"], f"{row['target']} {row['method']}: a failure needs its error"
        if row["runs"]:
            assert row["latency_ms"]["runs"] >= 1 and row["latency_ms"]["median"] > 0
    machine = results["machine"]
    assert machine["cpu"] and machine["logical_cpus"] and machine["load_average_start"]


def test_every_fp32_runtime_that_runs_anything_runs_the_discrete_export_with_parity(results):
    """The claim behind --method discrete, on the committed numbers.

    Rows where the runtime computed in reduced precision (OpenVINO's CPU plugin picks bf16 by itself on CPUs
    that have it) are not fp32 deployments: they are shown in the matrix but not held to fp32 parity.
    """
    rows = {(row["runtime"], row["method"]): row for row in results["results"]}
    fp32_runners = {runtime for (runtime, _), row in rows.items() if row["runs"] and row["precision"] == "f32"}
    assert {"onnxruntime", "openvino", "litert"} <= fp32_runners
    for runtime in fp32_runners:
        discrete = rows[(runtime, "discrete")]
        assert discrete["runs"] and discrete["parity"]["passed"], runtime
        assert discrete["parity"]["logits_max_abs_unflipped"] <= discrete["parity"]["threshold"], runtime


@pytest.mark.slow
def test_inspect_prints_the_measured_rows_for_the_files_method(tmp_path):
    path = tmp_path / "tiny_discrete.onnx"
    export_onnx(load_model(preset="tiny", method="discrete"), path, OnnxExportOptions(verify=False))
    out = CliRunner().invoke(main, ["inspect", str(path)]).output
    discrete = [(t, e) for (t, s), e in portability.MEASURED.items() if s == "gather-nearest"]
    assert discrete
    for target, entry in discrete:
        assert f"measured    {target} (gather-nearest): {entry['result']}  {entry['note']}" in out
    assert "-bilinear):" not in out
    assert f"({portability.MEASURED_SOURCE['date']};" in out

    described = json.loads(CliRunner().invoke(main, ["inspect", str(path), "--json"]).output)
    assert {m["target"] for m in described["portability"]["measured"]} == {t for t, _ in discrete}


@pytest.mark.slow
def test_openvino_runs_a_tiny_discrete_export_with_parity(tmp_path):
    """Live, where openvino is installed (benchmarks/run_portability.sh's environment); skipped elsewhere."""
    pytest.importorskip("openvino")
    from rtdetr_export.backends.openvino_runner import OpenVinoRunner
    from rtdetr_export.verify.compare import compare_raw, thresholds_for
    from rtdetr_export.imaging.inputs import synthetic_images
    from rtdetr_export.verify.reference import ReferenceRunner

    model = load_model(preset="tiny", method="discrete")
    path = tmp_path / "tiny_discrete.onnx"
    export_onnx(model, path, OnnxExportOptions(verify=False))
    images = synthetic_images(1, model.config.image_size, seed=0)
    with ReferenceRunner(model, "raw") as reference:
        ref = reference.infer({"images": images})
    with OpenVinoRunner(path, "f32", threads=2) as runner:
        test = runner.infer({"images": images})
    comparison = compare_raw(ref, test, thresholds_for("fp32"))
    assert not comparison.failures, comparison.failures
