"""Measured portability: the docs, the package data and inspect all show what benchmarks/portability.py wrote.

The measurements themselves need OpenVINO, pnnx/ncnn and TensorFlow/onnx2tf (benchmarks/run_portability.sh);
these tests read the committed results and need none of them. The one live check at the end runs only where
openvino is installed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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
    rendered = script.full_markdown(results)
    assert script.docs_section(script.DOCS.read_text()) == rendered, \
        "docs/portability.md is stale: run `python benchmarks/portability.py --render-only`"
    assert script.RESULT_MD.read_text() == "# Measured portability\n\n" + rendered


def test_the_d_fine_fixture_rows_are_rendered_where_the_docs_show_them(script):
    """benchmarks/results/portability/dfine_fixture/ (``--fixture --fixture-model dfine``): its markdown and its copy
    in docs/portability.md are the script's rendering of its JSON, and its split rows are the ones that exist to run
    on edge runtimes: ncnn's passed parity, with the fixture's AP."""
    path = script.fixture_json("dfine")
    fixture = json.loads(path.read_text())["fixture"]
    matrix = script._fixture_module().matrix_markdown(fixture)
    assert path.with_suffix(".md").read_text().endswith(matrix)
    docs = script.DOCS.read_text()
    begin, end = "<!-- dfine-fixture:begin -->", "<!-- dfine-fixture:end -->"
    assert docs[docs.index(begin) + len(begin):docs.index(end)].strip("\n") + "\n" == matrix, \
        "docs/portability.md's D-FINE fixture section is stale: re-render it from the committed JSON"
    assert fixture["model"]["path"] == "tests/data/fixture/dfine_shapes"
    rows = {(r["runtime"], r["artifact"], r["precision"]): r for r in fixture["results"]}
    ncnn = rows[("ncnn", "split", "fp32")]
    assert ncnn["runs"] and ncnn["parity"]["passed"] and ncnn["AP_delta"] == 0.0


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


# -- the trained fixture's rows (benchmarks/portability.py --fixture): single file and split artifact ------------
@pytest.fixture(scope="module")
def fixture_results(results):
    assert "fixture" in results, "the committed matrix has no fixture rows: run benchmarks/run_portability.sh --fixture"
    return results["fixture"]


def test_readme_edge_table_is_the_scripts_rendering_of_the_committed_json(script, fixture_results):
    readme = script.README.read_text()
    assert script.section(readme, script.EDGE_BEGIN, script.EDGE_END) == \
        script._fixture_module().compact_markdown(fixture_results), \
        "README.md's edge table is stale: run `python benchmarks/portability.py --render-only`"


def test_fixture_matrix_has_every_row_once_and_each_row_is_consistent(script, fixture_results):
    from rtdetr_export.verify import thresholds_for

    module = script._fixture_module()
    keys = [(row["runtime"], row["artifact"], row["precision"]) for row in fixture_results["results"]]
    assert keys == [key for key in module.ROWS if key[0] in fixture_results["runtimes"]]
    assert set(fixture_results["runtimes"]) == {"onnxruntime", "ncnn", "rknn", "litert"}
    reference_ap = fixture_results["reference"]["AP"]["AP"]
    for row in fixture_results["results"]:
        name = f"{row['target']} {row['artifact']} {row['precision']}"
        if not row["runs"] or not row["converts"]:
            assert row["error"]["first_line"], f"{name}: a failure needs the tool's error"
        if not row["runs"]:
            assert "parity" not in row and "AP" not in row, name
            continue
        parity, agreement = row["parity"], row["agreement"]
        worst = max(parity["logits_max_abs"], parity["pred_boxes_max_abs"])
        # No discrete sampler here, so no rounding flips: parity passes exactly when both errors are in the limit.
        assert parity["passed"] == (worst <= parity["threshold"]), name
        limits = thresholds_for(agreement["limits"])
        assert agreement["passed"] == (agreement["matched"] >= limits.min_matched
                                       and agreement["labels"] >= limits.min_label_agreement
                                       and agreement["boxes"] >= limits.min_mean_iou
                                       and agreement["scores"] <= limits.max_mean_score_abs), name
        # RKNN's float mode computes in fp16; fp32 rows show agreement beside parity, judged by parity.
        assert agreement["limits"] == ("fp16" if row["precision"] == "fp16" else "int8"), name
        assert abs(row["AP_delta"] - (row["AP"]["AP"] - reference_ap)) <= 1e-4, name
        assert 0 <= row["AP"]["AP"] <= 1 and row["latency_ms"]["median"] > 0, name
        assert agreement["images"] == fixture_results["settings"]["val_images"], name


def test_fixture_split_artifact_runs_on_ncnn_with_fp32_parity(fixture_results):
    """Issue 27's claim on the committed numbers: graph 1 -> host step -> graph 2 on ncnn equals PyTorch."""
    rows = {(r["runtime"], r["artifact"], r["precision"]): r for r in fixture_results["results"]}
    for key in (("onnxruntime", "single", "fp32"), ("onnxruntime", "split", "fp32"), ("ncnn", "split", "fp32")):
        row = rows[key]
        assert row["converts"] and row["runs"] and row["parity"]["passed"], key
        # fp32 parity on every val image's detections too: the same AP as PyTorch to COCO's 4 decimals.
        assert abs(row["AP_delta"]) <= 1e-4, key
    # The single file still holds TopK and GatherElements, which ncnn has no layer for: the split exists for it.
    single = rows[("ncnn", "single", "fp32")]
    assert not single["converts"] and "TopK" in single["error"]["first_line"]


def test_litert_oiqt_rows_render_with_their_recipe_named(script, fixture_results):
    """The `int8-oiqt` row kind (LiteRT INT8 with onnx2tf's -oiqt): its rows show that precision in both tables,
    and the matrix's legend names the recipe only where such a row is present."""
    import copy

    module = script._fixture_module()
    assert {("litert", "single", "int8-oiqt"), ("litert", "split", "int8-oiqt"),
            ("litert", "split", "int8-oiqt+fp32")} <= set(module.ROWS)
    plain = copy.deepcopy(fixture_results)
    plain["results"] = [r for r in plain["results"] if not r["precision"].startswith("int8-oiqt")]
    row = copy.deepcopy(next(r for r in plain["results"] if r["runtime"] == "litert" and r["runs"]))
    row["precision"] = "int8-oiqt+fp32"
    with_oiqt = {**plain, "results": plain["results"] + [row]}
    legend = "`int8-oiqt`: LiteRT's INT8 with onnx2tf's `-oiqt`"
    assert legend not in module.matrix_markdown(plain)
    matrix = module.matrix_markdown(with_oiqt)
    assert legend in matrix
    rendered = [line for line in matrix.splitlines() if line.startswith("| LiteRT") and "| int8-oiqt+fp32 |" in line]
    assert len(rendered) == 1 and f"{row['AP']['AP']:.4f}" in rendered[0]
    assert "| int8-oiqt+fp32 |" in module.compact_markdown(with_oiqt)


def test_litert_oiqt_zero_padding_is_allowed_only_after_a_relu(script, tmp_path):
    """onnx2tf's -oiqt pads every MaxPool with 0: the worker takes that only where the pooled values are >= 0."""
    import onnx
    from onnx import TensorProto, helper

    module = script._fixture_module()

    def graph_with(producer: str) -> Path:
        nodes = [helper.make_node(producer, ["x"], ["y"]),
                 helper.make_node("MaxPool", ["y"], ["z"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])]
        outputs = [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 1, 4, 4])]
        graph = helper.make_graph(nodes, producer, inputs, outputs)
        path = tmp_path / f"{producer}.onnx"
        onnx.save(helper.make_model(graph), str(path))
        return path

    module._LiteRtGraph._check_zero_padding_is_exact(graph_with("Relu"))
    with pytest.raises(module.ConversionError, match="reads Identity, not a ReLU"):
        module._LiteRtGraph._check_zero_padding_is_exact(graph_with("Identity"))


def test_another_presets_matrix_is_kept_beside_the_projects_and_rendered_from_its_json(script):
    """--preset dfine_n wrote benchmarks/results/portability/dfine_n/ only: its markdown is the script's rendering
    of its JSON, every row a failure with its error or a run with parity and latency."""
    path = script.results_json("dfine_n")
    assert path.parent.name == "dfine_n" and script.results_json(script.PRESET) == script.RESULT_JSON
    data = json.loads(path.read_text())
    assert data["model"]["preset"] == "dfine_n" and data["command"].endswith("--preset dfine_n")
    assert path.with_suffix(".md").read_text() == "# Measured portability: dfine_n\n\n" + script.matrix_markdown(data)
    for row in data["results"]:
        assert row["runs"] or row["error"]["first_line"]
        if row["runs"]:
            assert row["latency_ms"]["median"] > 0 and "passed" in row["parity"]
