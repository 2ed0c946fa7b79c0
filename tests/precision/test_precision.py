"""FP16 and INT8 on the ONNX graph: what stays FP32, Q/DQ placement, CPU verification by detection agreement."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from conftest import SHAPES_DSP, SHAPES_MODEL, SHAPES_VAL
from rtdetr_export.cli import main
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
from rtdetr_export.export.graph_checks import check_graph
from rtdetr_export.artifact import open_artifact, read_metadata
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.precision import PrecisionOptions
from rtdetr_export.backends.fp16_emulation import fp16_emulation_model
from rtdetr_export.precision.fp16 import FP32_OP_TYPES, Fp16Plan, convert_fp16, plan_fp16
from rtdetr_export.onnx_graph import FLOAT, FLOAT16, element_types, producers
from rtdetr_export.precision.int8 import ATTENTION_MATMUL, QUANTIZED_OPS, Int8Options, entropy_ranges, excluded_nodes
from rtdetr_export.verify.compare import PRECISION_THRESHOLDS
from rtdetr_export.weights import load_model
from paths import TESTS
from tiers import costly

IMAGES = TESTS / "data" / "images"
# The tests reading one module fixture run on one worker (README: --dist loadgroup): each fixture is an export,
# converted and verified, of ~10 s.
ON_FP16_TINY = pytest.mark.xdist_group("precision_fp16_tiny")
ON_INT8_TRAINED = pytest.mark.xdist_group("precision_int8_trained")


@pytest.fixture(scope="module")
@costly
def fp16_tiny(tmp_path_factory) -> Path:
    """tiny, discrete sampler, dynamic batch, FP16 (API), verified at batch 1 and 4."""
    path = tmp_path_factory.mktemp("fp16") / "tiny_fp16.onnx"
    model = load_model(preset="tiny", method="discrete")
    options = OnnxExportOptions(dynamic_batch=True, precision=PrecisionOptions("fp16", calib_count=4))
    export_onnx(model, path, options)
    return path


@pytest.fixture(scope="module")
@costly
def int8_trained(tmp_path_factory) -> tuple[Path, object]:
    """The trained fixture, default sampler, detections head, INT8 from synthetic calibration, via `trt
    --onnx-only` (the INT8 limits were derived on trained weights; random ones tie their scores)."""
    folder = tmp_path_factory.mktemp("int8")
    result = CliRunner().invoke(main, ["trt", "--model", str(SHAPES_MODEL), "--head", "detections", "--int8",
                                       "--calib-count", "4", "--onnx-only", "-o", str(folder / "shapes_int8.engine")])
    return folder / "shapes_int8.onnx", result


def _fp32_tiny_graph(tmp_path: Path) -> onnx.ModelProto:
    path = tmp_path / "tiny.onnx"
    export_onnx(load_model(preset="tiny", method="discrete"), path, OnnxExportOptions(verify=False))
    return onnx.load(str(path))


# -- FP16 --------------------------------------------------------------------------------------------------------
@ON_FP16_TINY
def test_fp16_graph_keeps_sensitive_ops_fp32_and_io_fp32(fp16_tiny):
    model = onnx.load(str(fp16_tiny))
    assert open_artifact(fp16_tiny).sampler is Sampler.GATHER_NEAREST
    check_graph(model, Sampler.GATHER_NEAREST)  # checker, no Loop/If/NonZero/Scan, no GridSample
    types = element_types(model)
    assert all(types[v.name] == FLOAT for v in [*model.graph.input, *model.graph.output]
               if v.name != "orig_target_sizes")
    sensitive = [n for n in model.graph.node if n.op_type in FP32_OP_TYPES]
    assert {n.op_type for n in sensitive} >= {"LayerNormalization", "Softmax", "Sigmoid", "Log", "TopK", "Floor"}
    for node in sensitive:
        assert all(types[o] != FLOAT16 for o in node.output), node.name
    # The inverse-sigmoid refinement x / (1 - x) reaches 1e5 (clamped at 1e-5): FP16 would give inf there.
    refinement = [n for n in model.graph.node if n.name.startswith("/model/decoder/Div")]
    assert refinement and all(types[n.output[0]] == FLOAT for n in refinement)
    heavy = [n for n in model.graph.node if n.op_type in ("Conv", "MatMul")]
    half = [n for n in heavy if types[n.output[0]] == FLOAT16]
    assert len(half) >= 0.8 * len(heavy), f"only {len(half)} of {len(heavy)} Conv/MatMul run in FP16"


@ON_FP16_TINY
def test_fp16_graph_has_no_rounding_between_two_fp32_nodes(fp16_tiny):
    model = onnx.load(str(fp16_tiny))
    made, types = producers(model), element_types(model)
    for node in model.graph.node:
        if node.op_type == "Cast" and node.attribute[0].i == FLOAT:
            first = made.get(node.input[0])
            assert not (first is not None and first.op_type == "Cast" and types.get(first.input[0]) == FLOAT), \
                f"{first.name} -> {node.name} rounds an FP32 tensor to FP16 and back"


@ON_FP16_TINY
def test_fp16_export_meets_agreement_thresholds_and_records_recipe(fp16_tiny):
    sidecar = json.loads(fp16_tiny.with_suffix(".json").read_text())
    assert sidecar == read_metadata(onnx.load(str(fp16_tiny)))
    assert sidecar["precision"] == "fp16"
    report = sidecar["verification"]
    assert report["passed"] and report["candidate"] == "onnxruntime-cpu-fp16-emulated"
    assert [run["batch"] for run in report["runs"]] == [1, 4]
    limits = PRECISION_THRESHOLDS["fp16"]
    assert report["thresholds"]["min_matched"] == limits.min_matched
    for run in report["runs"]:
        assert run["outputs"]["matched"]["agreement"] >= limits.min_matched
        assert run["outputs"]["scores"]["mean_abs"] <= limits.max_mean_score_abs
    recipe = sidecar["precision_recipe"]
    assert recipe["library"].startswith("onnxruntime.transformers.float16")
    assert recipe["range_calibration"]["source"] == "synthetic" and recipe["range_calibration"]["count"] == 4
    assert recipe["nodes"]["fp16"] > 0 and recipe["nodes"]["fp32"] > 0
    assert any("box / score" in reason for reason in recipe["fp32_nodes"])


@ON_FP16_TINY
def test_fp16_file_runs_on_onnxruntime_cpu(fp16_tiny):
    session = ort.InferenceSession(str(fp16_tiny), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).random((2, 3, 320, 320), dtype=np.float32)
    logits, boxes = session.run(None, {"images": images})
    assert logits.dtype == np.float32 and np.isfinite(logits).all() and np.isfinite(boxes).all()


@pytest.mark.slow
@ON_FP16_TINY
def test_verify_command_accepts_fp16_files(fp16_tiny):
    result = CliRunner().invoke(main, ["verify", str(fp16_tiny), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["precision"] == "fp16" and report["passed"]


def _tiny_graph(nodes, inits, inputs=("x",), shape=(4,)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, FLOAT, list(shape)) for n in inputs],
                              [helper.make_tensor_value_info("y", FLOAT, list(shape))],
                              [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_range_rule_keeps_overflowing_tensors_fp32():
    model = _tiny_graph([helper.make_node("Mul", ["x", "k"], ["big"], name="scale"),
                         helper.make_node("Add", ["big", "b"], ["shifted"], name="shift"),
                         helper.make_node("Div", ["shifted", "k"], ["small"], name="unscale"),
                         helper.make_node("Relu", ["small"], ["y"], name="relu")],
                        {"k": [1000.0], "b": [1.0]})
    x = np.array([90.0, -80.0, 3.0, 0.5], np.float32)
    plan = plan_fp16(model, {"x": 90.0, "big": 9e4, "shifted": 9e4, "small": 90.0, "y": 90.0})
    assert {"scale", "shift", "unscale"} <= set(plan.fp32_nodes) and plan.over_range["big"] == 9e4
    expected = np.maximum((x * 1000 + 1) / 1000, 0)
    for fp32_nodes, finite in (({n: "" for n in plan.fp32_nodes if n != "relu"}, True), ({"relu": ""}, False)):
        emulated = fp16_emulation_model(convert_fp16(model, Fp16Plan(fp32_nodes, plan.range_limit)))
        session = ort.InferenceSession(emulated.SerializeToString(), providers=["CPUExecutionProvider"])
        y = session.run(None, {"x": x})[0]
        assert np.isfinite(y).all() == finite  # without the rule, 9e4 overflows FP16 storage to inf
        if finite:
            np.testing.assert_allclose(y, expected, rtol=1e-3)


def test_emulation_rounds_every_fp16_tensor_like_numpy():
    model = _tiny_graph([helper.make_node("Mul", ["x", "w"], ["m"], name="mul"),
                         helper.make_node("Add", ["m", "b"], ["y"], name="add")], {"w": [1.1], "b": [0.3]})
    emulated = fp16_emulation_model(convert_fp16(model, Fp16Plan({}, 4096.0)))
    assert not any(t.data_type == FLOAT16 for t in emulated.graph.initializer)
    x = np.array([1.2345, 3.14159, 1000.3, 7e-5], np.float32)
    h = np.float16
    expected = (h(h(h(x) * h(1.1)) + h(0.3))).astype(np.float32)
    got = ort.InferenceSession(emulated.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(got[0], expected)


def test_onnxruntime_keeps_explicit_fp16_rounding_casts():
    # The emulation depends on it: an optimiser that folded Cast(fp16) -> Cast(fp32) would skip the rounding.
    model = _tiny_graph([helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
                         helper.make_node("Cast", ["h"], ["f"], to=TensorProto.FLOAT),
                         helper.make_node("Mul", ["f", "one"], ["y"])], {"one": [1.0]})
    x = np.array([1.0001, 3.14159265, 70000.0, 1e-9], np.float32)
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with np.errstate(over="ignore"):  # 70000 overflows FP16 to inf, on both sides
        np.testing.assert_array_equal(got, x.astype(np.float16).astype(np.float32))


# -- INT8 --------------------------------------------------------------------------------------------------------
@ON_INT8_TRAINED
def test_int8_onnx_only_says_it_calibrated_on_synthetic_scenes(int8_trained):
    path, result = int8_trained
    assert result.exit_code == 0, result.output
    assert "synthetic scenes" in result.stderr and "engine not built" in result.stdout
    assert path.is_file() and not path.with_suffix(".engine").exists()
    sidecar = json.loads(path.with_suffix(".json").read_text())
    calibration = sidecar["precision_recipe"]["calibration"]
    assert calibration["source"] == "synthetic" and calibration["count"] == 4 and calibration["method"] == "minmax"
    assert sidecar["verification"]["passed"] and sidecar["precision"] == "int8"


@ON_INT8_TRAINED
def test_int8_graph_has_qdq_on_every_conv_and_matmul_not_excluded(int8_trained):
    path, _ = int8_trained
    model = onnx.load(str(path))
    sampler = open_artifact(path).sampler
    assert sampler is Sampler.for_export("default")  # gathers: GridSample is refused too
    check_graph(model, sampler)
    excluded = json.loads(path.with_suffix(".json").read_text())["precision_recipe"]["excluded_nodes"]
    made = producers(model)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    layers = [n for n in model.graph.node if n.op_type in QUANTIZED_OPS]
    quantized = [n for n in layers if n.name not in excluded]
    assert len(quantized) > 20 and excluded
    def dequantizer(name):  # below opset 19 an FP16 layer reads its DQ through a Cast (FP32 Q/DQ)
        node = made.get(name)
        while node is not None and node.op_type == "Cast":
            node = made.get(node.input[0])
        return node

    for node in layers:
        fed = [getattr(dequantizer(name), "op_type", None) == "DequantizeLinear" for name in node.input[:2]]
        assert all(fed) if node.name not in excluded else not any(fed), node.name
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero_point = inits[node.input[2]]
            assert zero_point.dtype == np.int8 and not zero_point.any(), f"{node.name}: not symmetric INT8"
    conv_weights = [dequantizer(n.input[1]) for n in quantized if n.op_type == "Conv"]
    assert all(inits[dq.input[1]].size == inits[dq.input[0]].shape[0] for dq in conv_weights)  # per channel


@ON_INT8_TRAINED
def test_int8_default_exclusions_cover_heads_selection_and_attention(int8_trained):
    path, _ = int8_trained
    excluded = json.loads(path.with_suffix(".json").read_text())["precision_recipe"]["excluded_nodes"]
    for part in ("dec_score_head", "enc_score_head", "dec_bbox_head", "enc_bbox_head", "enc_output",
                 "query_pos_head", "sampling_offsets", "attention_weights"):
        assert any(part in name for name in excluded), part
    assert any(reason == ATTENTION_MATMUL for reason in excluded.values())


@pytest.mark.slow
def test_int8_exclusion_patterns(tmp_path):
    model = _fp32_tiny_graph(tmp_path)
    mine = excluded_nodes(model, Int8Options(exclude=("*/backbone/conv1/*",), default_exclusions=False))
    assert mine and all(name.startswith("/model/backbone/conv1/") for name in mine)
    with pytest.raises(Exception, match="matches no node"):
        excluded_nodes(model, Int8Options(exclude=("*/no_such_layer*",)))


@pytest.mark.slow
def test_entropy_calibration_clips_outliers_unlike_minmax(tmp_path):
    model = _tiny_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], {"w": np.eye(4)}, shape=(1, 4))
    onnx.save(model, str(tmp_path / "m.onnx"))
    rng = np.random.default_rng(0)
    feeds = [{"x": rng.normal(size=(1, 4)).astype(np.float32)} for _ in range(64)]
    feeds.append({"x": np.array([[40.0, 0, 0, 0]], np.float32)})  # one outlier
    ranges = entropy_ranges(tmp_path / "m.onnx", feeds, tmp_path)
    assert 1.0 < ranges["x"] < 20.0


@pytest.mark.slow
def test_int8_with_calibration_images_and_verify_command(tmp_path):
    """The discrete fine-tune of the trained fixture, calibrated on 3 of its val images (a test of the options;
    accuracy runs never calibrate on the images they score)."""
    out = tmp_path / "dsp_int8.onnx"
    images = SHAPES_VAL / "images"
    result = CliRunner().invoke(main, ["onnx", "--model", str(SHAPES_DSP), "--precision", "int8",
                                       "--calib-images", str(images), "--calib-count", "3", "--calib-method",
                                       "percentile", "--int8-exclude", "*/backbone/conv1/conv1_1/*", "--quiet",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    recipe = json.loads(out.with_suffix(".json").read_text())["precision_recipe"]
    assert recipe["calibration"]["source"] == str(images) and recipe["calibration"]["count"] == 3
    assert recipe["calibration"]["method"] == "percentile"
    assert any("conv1_1" in name for name in recipe["excluded_nodes"])
    verified = CliRunner().invoke(main, ["verify", str(out), "--model", str(SHAPES_DSP)])
    assert verified.exit_code == 0 and "PASS" in verified.output, verified.output


# -- bad input ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--precision", "int8", "--calib-images", "EMPTY"], "contains no images"),
    (["--precision", "fp32", "--calib-images", "IMAGES"], "--calib-images needs"),
    (["--precision", "fp16", "--int8-exclude", "*"], "apply to --precision int8 only"),
    (["--precision", "int8", "--int8-float", "fp32", "--keep-fp32", "*"], "--keep-fp32 applies"),
    (["--precision", "int8", "--calib-count", "0"], "--calib-count must be at least 1"),
])
def test_bad_precision_options_fail_in_one_line_without_files(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    args = [{"EMPTY": str(tmp_path / "empty"), "IMAGES": str(IMAGES)}.get(a, a) for a in args]
    result = CliRunner().invoke(main, ["onnx", "--preset", "tiny", *args, "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code == 1 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


# -- r18vd -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("method, precision", [("discrete", "fp16"), ("default", "int8")])
def test_r18vd_reduced_precision_meets_thresholds(tmp_path, method, precision):
    path = tmp_path / f"r18vd_{precision}.onnx"
    model = load_model(preset="r18vd", method=method)
    result = export_onnx(model, path, OnnxExportOptions(precision=PrecisionOptions(precision, calib_count=4)))
    assert result.record.sampler is Sampler.for_export(method)
    check_graph(onnx.load(str(path)), result.record.sampler)
    report = result.record.verification
    assert report.passed and report.precision == precision, report.failures
