"""`rtdetr-export inspect`: graph facts, provenance, portability; foreign and broken files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from rtdetr_export.cli import main
from rtdetr_export.export import portability
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
from rtdetr_export.pipeline.inspection import NO_PROVENANCE, describe_onnx
from rtdetr_export.weights import load_model
from paths import ROOT, TESTS
from tiers import costly

# One worker runs this module (README: --dist loadgroup): its tests share three exports, one of them verified
# (exported).
pytestmark = pytest.mark.xdist_group("inspect")

NPU = "NPU (typical)"


@pytest.fixture(scope="module")
@costly
def exported(tmp_path_factory):
    """One tiny export per sampler: default with GridSample verified (raw head), default with gathers and discrete
    unverified (detections head)."""
    folder = tmp_path_factory.mktemp("inspect")
    paths = {}
    for name, method, op, head, verify in (("default", "default", "gridsample", "raw", True),
                                           ("gather", "default", "gather", "detections", False),
                                           ("discrete", "discrete", "gather", "detections", False)):
        path = folder / f"{name}.onnx"
        export_onnx(load_model(preset="tiny", method=method), path,
                    OnnxExportOptions(head=head, top_k=100, verify=verify, sampler=Sampler.parse(method, op)))
        paths[name] = path
    return paths


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    node = helper.make_node("Add", ["a", "b"], ["c"])
    graph = helper.make_graph([node], "add", [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 3]),
                                              helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["n", 3])])
    path = tmp_path_factory.mktemp("foreign") / "add.onnx"
    onnx.save(helper.make_model(graph, producer_name="someone-else"), str(path))
    return path


def _invoke(*args):
    return CliRunner().invoke(main, ["inspect", *map(str, args)])


def test_discrete_and_gather_have_no_gridsample_and_are_not_npu_blocked_by_it(exported):
    discrete, default = describe_onnx(exported["discrete"]).to_json(), describe_onnx(exported["default"]).to_json()
    gather = describe_onnx(exported["gather"]).to_json()
    for description in (discrete, gather):
        assert "GridSample" not in description["op_census"]
        assert "GridSample" not in description["portability"]["blockers"][NPU]
        assert description["portability"]["blockers"]["TensorRT 8.4"] == ["LayerNormalization"]
    assert gather["provenance"]["sampler"] == "gather-bilinear"
    assert default["provenance"]["sampler"] == "gridsample-bilinear"
    assert default["op_census"]["GridSample"] > 0
    assert "GridSample" in default["portability"]["blockers"][NPU]
    assert "GridSample" in default["portability"]["blockers"]["TensorRT 8.4"]
    assert default["portability"]["blockers"]["TensorRT 10"] == []
    # Every op our exports produce is in the table: nothing of ours is "unknown".
    for description in (discrete, default, gather):
        assert {row["op"] for row in description["portability"]["rows"]} == set(description["op_census"])
        assert all(s["verdict"] != "unknown" for row in description["portability"]["rows"]
                   for s in row["support"].values())


def test_text_report_shows_io_provenance_and_blockers(exported):
    result = _invoke(exported["default"])
    assert result.exit_code == 0, result.output
    out = result.output
    for expected in ("opset 17", "images", "float32  [1, 3, 320, 320]", "logits", "pred_boxes",
                     "random weights (seed 0)", "method        default", "head raw", "input 320x320",
                     "precision fp32", "classes 80", "rtdetr-export 0.1.0", "torch ",
                     "verification  PASSED", "max_abs", "op census   ", "GridSample", "blockers"):
        assert expected in out, expected
    blockers = {line.split("  ")[1].strip(): line for line in out.splitlines() if line.startswith("  NPU")}
    assert "GridSample" in blockers["NPU (typical)"]
    assert NO_PROVENANCE not in out


def test_json_output_parses(exported):
    result = _invoke(exported["discrete"], "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    for key in ("io", "opset", "op_census", "provenance", "portability"):
        assert key in data
    assert data["opset"] == 17
    assert [v["name"] for v in data["io"]["inputs"]] == ["images", "orig_target_sizes"]
    assert [v["name"] for v in data["io"]["outputs"]] == ["labels", "boxes", "scores"]
    provenance = data["provenance"]
    assert provenance["method"] == "discrete" and provenance["head"] == "detections"
    assert provenance["classes"] == 80 and provenance["input_size"] == [320, 320]
    assert provenance["verification"] is None and provenance["op_census_matches_graph"] is True
    assert data["provenance_note"] is None
    port = data["portability"]
    assert port["targets"] == list(portability.TARGETS)
    assert set(port["blockers"]) == set(portability.TARGETS)
    assert all(set(row["support"]) == set(portability.TARGETS) for row in port["rows"])


def test_verification_numbers_in_json(exported):
    verification = describe_onnx(exported["default"]).to_json()["provenance"]["verification"]
    assert verification["passed"] is True and verification["batches"] == [1]
    assert set(verification["outputs"]) == {"logits", "pred_boxes"}
    # The judged metric: the largest difference once any proven rounding flips are re-rounded (here none).
    assert verification["outputs"]["logits"]["metric"] == "max_abs_unflipped"
    assert verification["outputs"]["logits"]["value"] <= verification["outputs"]["logits"]["threshold"]


def test_foreign_onnx_has_no_provenance(foreign):
    result = _invoke(foreign)
    assert result.exit_code == 0, result.output
    assert NO_PROVENANCE in result.output
    assert "float32  [n, 3]" in result.output and "Add 1" in result.output
    data = json.loads(_invoke(foreign, "--json").output)
    assert data["provenance"] is None and data["provenance_note"] == NO_PROVENANCE
    assert data["op_census"] == {"Add": 1} and data["producer"] == "someone-else"


@pytest.mark.parametrize("content", [b"name,score\nfoo,1\n", os.urandom(4096), b"", None, "dir"],
                         ids=["text", "random", "empty", "missing", "folder"])
def test_bad_files_give_one_error_line(tmp_path, content):
    path = tmp_path / "x.onnx"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    result = _invoke(path)
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)  # handled, not a crash
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_real_process_prints_no_traceback(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file\n")
    proc = subprocess.run([sys.executable, "-c", "from rtdetr_export.cli import main; main()", "inspect", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"error: {path} is not an ONNX file (DecodeError)"]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_table_is_well_formed():
    for op, overrides in portability.TABLE.items():
        assert set(overrides) <= set(portability.TARGETS), op
        for value, note in overrides.values():
            assert value in ("yes", "no", "partial", "unknown"), op
            assert value == "yes" or note, f"{op}: a {value!r} verdict needs a note"
    assert all(portability.SOURCES[t] for t in portability.TARGETS)
    for op in ("Cast", "QuantizeLinear", "DequantizeLinear"):
        assert op in portability.TABLE
    rows = portability.portability_rows({"FancyCustomOp": 2, "Add": 1})
    assert rows[0]["support"]["TensorRT 10"]["verdict"] == "unknown"
    assert portability.blockers({"FancyCustomOp": 2}) == {t: [] for t in portability.TARGETS}


def test_measured_results_are_shown_for_the_files_sampler(exported, monkeypatch):
    monkeypatch.setitem(portability.MEASURED, ("OpenVINO", "gather-nearest"),
                        {"result": "converted", "tool": "openvino test", "note": "ran on CPU"})
    monkeypatch.setitem(portability.MEASURED, ("OpenVINO", "gridsample-bilinear"), {"result": "failed"})
    monkeypatch.setitem(portability.MEASURED, ("OpenVINO", "gather-bilinear"), {"result": "runs"})
    out = _invoke(exported["discrete"]).output
    assert "measured    OpenVINO (gather-nearest): converted" in out and "-bilinear)" not in out
    out = _invoke(exported["gather"]).output
    assert "measured    OpenVINO (gather-bilinear): runs" in out and "(gridsample-bilinear)" not in out


def test_docs_show_the_current_table():
    docs = ROOT / "docs" / "portability.md"
    assert portability.markdown_table() in docs.read_text(), \
        "docs/portability.md is stale: paste `python -m rtdetr_export.export.portability` into it"


# -- edge runtimes: expected or not, from the fixture matrix, and the export that runs where a file does not -----------
def test_a_single_file_that_edge_runtimes_reject_is_told_the_split_export_that_runs_there():
    from rtdetr_export.export.portability import edge_expectations

    single = TESTS / "data" / "schema_examples" / "micro_raw_v3.onnx"  # gather-bilinear, the matrix's single file
    edge = {e["runtime"]: e for e in describe_onnx(single).to_json()["portability"]["edge"]}
    assert edge["ncnn"]["expected"] is False and "does not convert" in edge["ncnn"]["measured"][0]
    assert edge["ncnn"]["fix"].endswith("--split --bilinear-op gridsample")
    assert edge["litert"]["expected"] is True and edge["litert"]["fix"] is None
    # The matrix's split (GridSample layout) ran on every edge runtime; a gather split is unproven on ncnn's layers.
    assert all(e["expected"] is True for e in edge_expectations("split", "gridsample-bilinear"))
    assert {e["runtime"]: e["expected"] for e in edge_expectations("split", "gather-bilinear")}["ncnn"] is False


def test_inspect_of_a_split_artifact_says_per_edge_runtime_whether_it_runs(micro_split):
    result = CliRunner().invoke(main, ["inspect", str(micro_split)])
    assert result.exit_code == 0, result.output
    assert "this split artifact on edge runtimes" in result.output
    assert "ncnn (via pnnx)" in result.output and "--split --bilinear-op gridsample" in result.output
    described = json.loads(CliRunner().invoke(main, ["inspect", str(micro_split), "--json"]).output)
    assert {e["runtime"] for e in described["edge"]} == {"ncnn", "rknn", "litert"}
