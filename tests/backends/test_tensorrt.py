"""`rtdetr-export trt`: engine build, runner and latency on TensorRT 10/11; the CPU side everywhere.

Tests that need TensorRT and a CUDA GPU skip, with the reason, where either is missing; nothing here imitates
a TensorRT result. Without TensorRT the command still makes and verifies the precision ONNX, then stops with
MissingDependencyError (exit 2).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from rtdetr_export.artifact import (EngineRecord, GraphOptions, IODescription, PrecisionRecipe, Verification,
                                    open_artifact, sidecar_path)
from rtdetr_export.artifact.verification import BatchComparison
from rtdetr_export.backends.tensorrt.builder import BuildOptions, check_tensorrt_graph, profile_shapes
from rtdetr_export.backends.tensorrt.runner import output_shape, shape_refused
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.pipeline.engine import engine_batches, engine_record
from rtdetr_export.backends.tensorrt.latency import latency_summary
from rtdetr_export.cli import main
from rtdetr_export.errors import RTDetrExportError
from tiers import costly


def _tensorrt_missing() -> str | None:
    """Why the GPU tests cannot run here, or None."""
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install tensorrt on an NVIDIA GPU machine)"
    import tensorrt

    if not hasattr(tensorrt, "Builder"):
        return "the tensorrt package has no TensorRT libraries"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU visible to PyTorch"
    return None


MISSING = _tensorrt_missing()
needs_tensorrt = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

DETECTIONS_IO = IODescription.from_json(
    {"inputs": [{"name": "images", "shape": ["batch", 3, 320, 320], "dtype": "float32"},
                {"name": "orig_target_sizes", "shape": ["batch", 2], "dtype": "int64"}],
     "outputs": [{"name": "labels", "shape": ["batch", 300], "dtype": "int64"}]}, "test io")


# -- pure helpers (no TensorRT) ----------------------------------------------------------------------------------
def test_profile_covers_every_batch_input_including_orig_target_sizes():
    shapes = profile_shapes(DETECTIONS_IO, BuildOptions(min_batch=1, opt_batch=4, max_batch=8))
    assert shapes == {"images": {"min": [1, 3, 320, 320], "opt": [4, 3, 320, 320], "max": [8, 3, 320, 320]},
                      "orig_target_sizes": {"min": [1, 2], "opt": [4, 2], "max": [8, 2]}}


def test_static_batch_profile_must_match_the_graph():
    static = IODescription.from_json(
        {"inputs": [{"name": "images", "shape": [1, 3, 640, 640], "dtype": "float32"}], "outputs": []}, "test io")
    assert profile_shapes(static, BuildOptions())["images"]["max"] == [1, 3, 640, 640]
    with pytest.raises(RTDetrExportError, match="static batch of 1"):
        profile_shapes(static, BuildOptions(min_batch=1, opt_batch=2, max_batch=4))


@pytest.mark.parametrize("options, message", [
    (BuildOptions(min_batch=4, opt_batch=2, max_batch=8), "min <= opt <= max"),
    (BuildOptions(min_batch=0), "min <= opt <= max"),
    (BuildOptions(workspace_mib=0), "--workspace"),
    (BuildOptions(builder_optimization_level=6), "--builder-opt-level"),
])
def test_build_options_are_validated(options, message):
    with pytest.raises(RTDetrExportError, match=message):
        options.validate()


def test_engine_record_holds_what_the_issue_asks_for(tmp_path, ours_fp32):
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"not really onnx, only hashed")
    options = BuildOptions(min_batch=1, opt_batch=2, max_batch=4, timing_cache="cache.bin")
    onnx_passed = Verification("raw", [BatchComparison(1)], {})
    onnx = replace(open_artifact(ours_fp32), precision="int8", recipe=PrecisionRecipe("int8", {"x": 1}),
                   verification=onnx_passed)
    assert onnx.head == "raw"
    shape = {"min": [1, 3, 320, 320], "opt": [2, 3, 320, 320], "max": [4, 3, 320, 320]}
    latency = {"batch": 2, "p50_ms": 1.0, "p90_ms": 1.1, "p99_ms": 1.2, "mean_ms": 1.05, "images_per_s": 1900.0}
    record = engine_record(onnx_path, onnx, options, trt_version="10.13.0",
                           gpu={"name": "GPU", "compute_capability": "9.0"}, profile={"images": shape},
                           io_tensors=[{"name": "images"}], verification=Verification("raw", [BatchComparison(1)], {}),
                           latency=latency, build_seconds=12.34)
    assert isinstance(record, EngineRecord)
    assert record.tensorrt == "10.13.0" and record.gpu["compute_capability"] == "9.0"
    assert record.precision == "int8" and record.recipe.details == {"x": 1}
    assert record.build["strongly_typed"] and record.build["max_batch"] == 4
    assert record.build["seconds"] == 12.3
    assert len(record.onnx.sha256) == 64 and record.onnx.verification_passed
    assert record.verification.passed and record.latency.p50_ms == 1.0 and record.head == "raw"
    assert record.profile["images"].max == (4, 3, 320, 320) and record.batch_range == (1, 4)
    # The sidecar's JSON holds the same fields under the names the file format gives them.
    data = record.to_json()
    assert data["tensorrt"] == "10.13.0" and data["gpu"]["compute_capability"] == "9.0"
    assert data["precision"] == "int8" and data["precision_recipe"] == {"x": 1}
    assert data["build"]["strongly_typed"] and data["build"]["max_batch"] == 4 and data["build"]["seconds"] == 12.3
    assert len(data["onnx"]["sha256"]) == 64 and data["onnx"]["verification_passed"]
    assert data["verification"]["passed"] and data["latency"]["p50_ms"] == 1.0 and data["head"] == "raw"
    assert data["profile"]["images"] == shape and data["format"] == "rtdetr-export/tensorrt-engine"
    assert EngineRecord.from_json(json.loads(json.dumps(data))).to_json() == data
    assert sidecar_path("out/model.engine") == Path("out/model.engine.json")
    assert engine_batches(options) == [1, 4] and engine_batches(BuildOptions()) == [1]


def test_latency_summary_percentiles():
    summary = latency_summary([float(i) for i in range(1, 101)], batch=2)
    assert summary["p50_ms"] == pytest.approx(50.5) and summary["p99_ms"] == pytest.approx(99.01)
    assert summary["images_per_s"] == pytest.approx(2000 / 50.5) and summary["iterations"] == 100


def test_tensorrt_graph_limits_allow_the_largest_topk_and_gridsample_up_to_opset_19():
    check_tensorrt_graph(GraphOptions(opset=19, head="detections", top_k=3840, sampler=Sampler.GRIDSAMPLE_BILINEAR))
    check_tensorrt_graph(GraphOptions(opset=20, sampler=Sampler.GATHER_NEAREST))  # no GridSample in the graph
    # The default sampler (gathers, no GridSample) is not affected by the opset-20 GridSample defect.
    assert Sampler.for_export("default") is Sampler.GATHER_BILINEAR
    check_tensorrt_graph(GraphOptions(opset=20, sampler=Sampler.GATHER_BILINEAR))
    check_tensorrt_graph(GraphOptions(opset=20, sampler=Sampler.for_export("default"), head="detections",
                                      top_k=3840))
    with pytest.raises(RTDetrExportError, match="--opset 19, or --bilinear-op gather"):
        check_tensorrt_graph(GraphOptions(opset=20, sampler=Sampler.GRIDSAMPLE_BILINEAR))
    with pytest.raises(RTDetrExportError, match="TopK limit of 3840"):
        check_tensorrt_graph(GraphOptions(opset=19, head="detections", top_k=3841, sampler=Sampler.GATHER_BILINEAR))


def test_a_batch_outside_the_profile_is_named_with_the_profile_range():
    profile = ([1, 3, 320, 320], [2, 3, 320, 320], [4, 3, 320, 320])  # get_tensor_profile_shape's min, opt, max
    assert shape_refused("images", (8, 3, 320, 320), profile).startswith("batch 8 is outside the engine's profile "
                                                                          "(1..4)")
    assert "shape [1, 3, 640, 640]" in shape_refused("images", (1, 3, 640, 640), profile)


def test_an_output_with_a_dynamic_dimension_left_is_refused():
    assert output_shape("logits", (2, 300, 80)) == (2, 300, 80)
    with pytest.raises(RTDetrExportError, match="data-dependent shape"):
        output_shape("boxes", (2, -1, 4))


# -- command line without TensorRT -------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(MISSING is None, reason="TensorRT is installed: the missing-TensorRT path cannot be shown here")
def test_trt_fp16_without_tensorrt_verifies_the_onnx_then_exits_2(tmp_path):
    engine = tmp_path / "tiny.engine"
    result = CliRunner().invoke(main, ["trt", "--preset", "tiny", "--method", "discrete", "--fp16", "--calib-count",
                                       "4", "-o", str(engine)])
    assert result.exit_code == 2, result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "pip install tensorrt" in error[0] and "tensorrt" in error[0]
    assert not engine.exists() and not sidecar_path(engine).exists()
    assert not list(tmp_path.glob(".*partial"))
    sidecar = json.loads(engine.with_suffix(".json").read_text())
    assert sidecar["precision"] == "fp16" and sidecar["verification"]["passed"]


@pytest.fixture(scope="module")
@costly
def ours_fp32(tmp_path_factory) -> Path:
    """One of our files, fp32 (unverified: only its provenance matters here)."""
    from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
    from rtdetr_export.weights import load_model

    path = tmp_path_factory.mktemp("ours") / "fp32.onnx"
    export_onnx(load_model(preset="tiny"), path, OnnxExportOptions(verify=False))
    return path


@pytest.mark.parametrize("args, message", [
    (["--preset", "tiny", "--fp16", "--int8"], "--fp16 and --int8 are exclusive"),
    (["--preset", "tiny", "--min-batch", "4", "--max-batch", "2"], "min <= opt <= max"),
    (["--preset", "tiny", "--fp16", "--int8-exclude", "*"], "apply to --precision int8 only"),
    (["--onnx", "FOREIGN"], "was not exported by rtdetr-export"),
    (["--onnx", "OURS", "--int8"], "is fp32, not int8"),
    (["--onnx", "OURS", "--preset", "tiny"], "drop --preset"),
    (["--onnx", "OURS", "--onnx-only"], "nothing to make"),
    (["--onnx", "OURS", "--calib-count", "3"], "already made"),
    (["--preset", "tiny", "--head", "detections", "--top-k", "3841"], "TopK limit of 3840"),
    (["--preset", "tiny", "--bilinear-op", "gridsample", "--opset", "20", "--quiet"],
     "wrong results on TensorRT 10.13 and 11.1"),
])
def test_bad_trt_options_fail_in_one_line_without_files(tmp_path, ours_fp32, args, message):
    foreign = tmp_path / "foreign.onnx"
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(foreign))
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [{"FOREIGN": str(foreign), "OURS": str(ours_fp32)}.get(a, a) for a in args]
    result = CliRunner().invoke(main, ["trt", *args, "-o", str(tmp_path / "x.engine")])
    assert result.exit_code == 1 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.slow
def test_default_sampler_at_opset_20_makes_and_verifies_its_onnx(tmp_path):
    """The default sampler writes gathers, no GridSample: opset 20 is accepted for TensorRT (issue defect 1)."""
    engine = tmp_path / "t.engine"
    result = CliRunner().invoke(main, ["trt", "--preset", "tiny", "--opset", "20", "--onnx-only", "-o", str(engine)])
    assert result.exit_code == 0, result.output
    onnx_path, sidecar = engine.with_suffix(".onnx"), engine.with_suffix(".json")
    assert onnx_path.is_file() and sidecar.is_file() and not engine.exists()
    assert "(verified)" in result.stdout
    data = json.loads(sidecar.read_text())
    assert data["schema_version"] == 4 and data["sampler"] == Sampler.GATHER_BILINEAR.value
    assert data["method"] == "default" and "bilinear_op" not in data["export"]
    assert data["export"]["opset"] == 20 and data["verification"]["passed"]
    record = open_artifact(onnx_path)
    assert record.sampler is Sampler.GATHER_BILINEAR and record.export.opset == 20 and record.verification.passed
    graph = onnx.load(str(onnx_path))
    assert not any(node.op_type == "GridSample" for node in graph.graph.node)
    assert any(o.domain in ("", "ai.onnx") and o.version == 20 for o in graph.opset_import)


@pytest.mark.parametrize("quiet", [[], ["--quiet"]])
def test_gridsample_sampler_at_opset_20_is_refused_in_one_line_naming_the_fix(tmp_path, quiet):
    engine = tmp_path / "t.engine"
    result = CliRunner().invoke(main, ["trt", "--preset", "tiny", "--bilinear-op", "gridsample", "--opset", "20",
                                       "--onnx-only", *quiet, "-o", str(engine)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    if quiet:  # without --quiet the random-weights notice comes first
        assert lines == errors, result.stderr
    assert "--opset 20" in errors[0] and "GridSample" in errors[0]
    assert "--opset 19" in errors[0] and "--bilinear-op gather" in errors[0]
    assert list(tmp_path.iterdir()) == []


def test_trt_output_must_be_an_engine_file(tmp_path):
    result = CliRunner().invoke(main, ["trt", "--preset", "tiny", "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 1 and "must end in .engine" in result.stderr


# -- TensorRT and a GPU ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_engines(tmp_path_factory):
    """fp32, fp16 and int8 engines of tiny (dynamic batch 1..4), built by the command; cached per module."""
    folder = tmp_path_factory.mktemp("engines")
    made = {}
    for precision, flags in (("fp32", []), ("fp16", ["--fp16"]), ("int8", ["--int8", "--calib-count", "4"])):
        engine = folder / f"tiny_{precision}.engine"
        result = CliRunner().invoke(main, ["trt", "--preset", "tiny", "--method", "discrete", *flags, "--min-batch",
                                           "1", "--opt-batch", "2", "--max-batch", "4", "--iterations", "20",
                                           "--warmup", "5", "--timing-cache", str(folder / "timing.cache"),
                                           "--builder-opt-level", "1", "--json", "-o", str(engine)])
        made[precision] = (engine, result)
    return made


@needs_tensorrt
@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_builds_verifies_and_records(tiny_engines, precision):
    engine, result = tiny_engines[precision]
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert engine.is_file() and json.loads(sidecar_path(engine).read_text()) == record
    assert record["precision"] == precision and record["verification"]["passed"]
    assert [run["batch"] for run in record["verification"]["runs"]] == [1, 4]
    assert record["gpu"]["compute_capability"] and record["tensorrt"].split(".")[0] in ("10", "11")
    assert record["profile"]["images"]["max"][0] == 4 and record["latency"]["p50_ms"] > 0
    assert {t["name"] for t in record["io_tensors"]} == {"images", "logits", "pred_boxes"}
    assert (engine.parent / "timing.cache").stat().st_size > 0


@needs_tensorrt
@pytest.mark.tensorrt
def test_runner_with_cuda_graph_matches_plain_runner(tiny_engines):
    from rtdetr_export.backends.tensorrt import TensorRTRunner

    engine, result = tiny_engines["fp16"]
    assert result.exit_code == 0, result.output
    feed = {"images": np.random.default_rng(0).random((2, 3, 320, 320), dtype=np.float32)}
    with TensorRTRunner(engine) as plain, TensorRTRunner(engine, cuda_graph=True) as graphed:
        want = plain.infer(feed)
        first, again = graphed.infer(feed), graphed.infer(feed)  # capture, then replay
    for name in want:
        np.testing.assert_array_equal(first[name], want[name])
        np.testing.assert_array_equal(again[name], want[name])


@needs_tensorrt
@pytest.mark.tensorrt
def test_parser_errors_name_the_node(tmp_path):
    from rtdetr_export.backends.tensorrt import build_serialized_engine

    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], name="the_bad_node", domain="bogus")],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("bogus", 1)])
    onnx.save(model, str(tmp_path / "bad.onnx"))
    io = IODescription.from_json({"inputs": [{"name": "x", "shape": [1, 4], "dtype": "float32"}], "outputs": []},
                                 "test io")
    with pytest.raises(RTDetrExportError, match="the_bad_node"):
        build_serialized_engine(tmp_path / "bad.onnx", io, BuildOptions())


@needs_tensorrt
@pytest.mark.tensorrt
def test_a_stale_timing_cache_is_replaced_not_fatal(tiny_engines, tmp_path):
    from rtdetr_export.backends.tensorrt import build_serialized_engine

    engine, result = tiny_engines["fp32"]
    assert result.exit_code == 0, result.output
    cache = tmp_path / "stale.cache"
    cache.write_bytes(b"not a timing cache of this TensorRT or GPU" * 16)
    onnx_path = engine.with_suffix(".onnx")
    options = BuildOptions(1, 1, 4, timing_cache=str(cache), builder_optimization_level=0)
    assert build_serialized_engine(onnx_path, open_artifact(onnx_path).io, options)
    assert not cache.read_bytes().startswith(b"not a timing cache")


@needs_tensorrt
@pytest.mark.tensorrt
def test_a_batch_outside_the_profile_is_a_clear_error(tiny_engines):
    from rtdetr_export.backends.tensorrt import TensorRTRunner

    engine, result = tiny_engines["fp32"]
    assert result.exit_code == 0, result.output
    with TensorRTRunner(engine) as runner, pytest.raises(RTDetrExportError, match="batch 5 is outside"):
        runner.infer({"images": np.zeros((5, 3, 320, 320), np.float32)})
