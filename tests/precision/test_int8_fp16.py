"""INT8 for TensorRT: Q/DQ on the quantized layers' inputs, FP16 everywhere else but the FP16 keep-list.

A strongly typed engine runs each layer in the graph's type, so an unquantized layer left FP32 in the graph
is an FP32 layer on the GPU (rf-detr#351: INT8 no faster than FP16). These tests read the graph.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from conftest import SHAPES_MODEL
from rtdetr_export.export.torch_export import GraphOptions, export_graph
from rtdetr_export.onnx_graph import FLOAT, FLOAT16, element_types, producers
from rtdetr_export.precision import PrecisionOptions, apply_precision
from rtdetr_export.precision.int8 import qdq_coverage
from rtdetr_export.precision.int8_fp16 import QDQ_FP32_REASON, unquantized_compute
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.verify import VerificationPlan, verify_onnx
from rtdetr_export.verify.compare import PRECISION_THRESHOLDS
from rtdetr_export.weights import load_model
from tiers import costly

# One worker runs this module (README: --dist loadgroup): its tests share an opset-19 graph and its INT8+FP16
# conversion (fp32_graph, int8_fp16).
pytestmark = pytest.mark.xdist_group("int8_fp16")

SIZE = (320, 320)


@pytest.fixture(scope="module")
def tiny():
    return load_model(preset="tiny")


@pytest.fixture(scope="module")
@costly
def fp32_graph(tiny) -> onnx.ModelProto:
    """tiny, bilinear sampler, opset 19 (QuantizeLinear takes FP16 from 19), raw head."""
    return export_graph(tiny, GraphOptions(opset=19)).graph


@pytest.fixture(scope="module")
@costly
def int8_fp16(fp32_graph):
    return apply_precision(fp32_graph, "raw", SIZE, PrecisionOptions("int8", calib_count=4))


def _fp32_keep_list(recipe: dict) -> dict[str, str]:
    return {name: reason for reason, names in recipe["fp16"]["fp32_nodes"].items() for name in names}


def test_every_unquantized_compute_node_is_fp16_except_the_documented_keep_list(int8_fp16):
    keep = _fp32_keep_list(int8_fp16.recipe)
    computed = unquantized_compute(int8_fp16.model)
    fp32 = sorted(name for name, kind in computed.items() if kind == FLOAT)
    assert [name for name in fp32 if name not in keep] == []
    assert sum(kind == FLOAT16 for kind in computed.values()) > len(fp32)
    assert int8_fp16.recipe["float"] == "fp16"
    assert not any(reason == QDQ_FP32_REASON for reason in keep.values()), "opset 19 carries FP16 Q/DQ"


def test_excluded_layers_run_fp16_and_quantized_layers_read_fp16_dequantized_inputs(int8_fp16):
    model = int8_fp16.model
    types, made = element_types(model), producers(model)
    coverage = qdq_coverage(model)
    assert coverage["quantized"] and coverage["float"], "default exclusions keep the heads out of INT8"
    keep = _fp32_keep_list(int8_fp16.recipe)
    nodes = {node.name: node for node in model.graph.node}
    for name in coverage["float"]:
        assert types[nodes[name].output[0]] == FLOAT16 or name in keep, name
    for name in coverage["quantized"]:
        for tensor in nodes[name].input[:2]:
            assert made[tensor].op_type == "DequantizeLinear" and types[tensor] == FLOAT16, name


@pytest.mark.slow
def test_int8_fp16_verifies_on_cpu_through_the_fp16_emulation_with_the_int8_limits(tmp_path):
    """On the trained fixture: the INT8 limits were derived on trained weights (random ones tie their scores)."""
    trained = load_model(SHAPES_MODEL)
    options = GraphOptions(opset=19)
    graph = export_graph(trained, options).graph
    path = tmp_path / "shapes_int8.onnx"
    onnx.save(apply_precision(graph, "raw", SIZE, PrecisionOptions("int8", calib_count=4)).model, str(path))
    plan = VerificationPlan.for_graph(options, trained.config.image_size)
    assert plan.runs == [(1, tuple(trained.config.image_size))] and plan.head == "raw" and plan.top_k == 300
    report = verify_onnx(trained, path, plan, precision="int8")
    assert report.candidate == "onnxruntime-cpu-fp16-emulated"
    assert report.thresholds["min_matched"] == PRECISION_THRESHOLDS["int8"].min_matched
    assert report.passed, report.failures


def test_int8_fp32_variant_keeps_every_unquantized_node_fp32(fp32_graph):
    result = apply_precision(fp32_graph, "raw", SIZE, PrecisionOptions("int8", calib_count=2, int8_float="fp32"))
    kinds = set(unquantized_compute(result.model).values())
    assert kinds == {FLOAT} and result.recipe["float"] == "fp32"
    assert qdq_coverage(result.model)["quantized"]


def test_below_opset_19_qdq_stay_fp32_with_casts_and_still_count_as_qdq_fed():
    # x -> Q -> DQ -> Cast(fp16) -> Conv(fp16): the layer is still quantized for coverage purposes.
    h = onnx.helper
    w = onnx.numpy_helper.from_array(np.ones((1, 1, 1, 1), np.int8), "w")
    nodes = [h.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             h.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             h.make_node("Cast", ["xd"], ["xh"], to=FLOAT16),
             h.make_node("DequantizeLinear", ["w", "s", "z"], ["wd"]), h.make_node("Cast", ["wd"], ["wh"], to=FLOAT16),
             h.make_node("Conv", ["xh", "wh"], ["y"], name="conv")]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", FLOAT, [1, 1, 2, 2])],
                         [h.make_tensor_value_info("y", FLOAT16, [1, 1, 2, 2])],
                         [w, onnx.numpy_helper.from_array(np.float32(0.1), "s"),
                          onnx.numpy_helper.from_array(np.int8(0), "z")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    assert qdq_coverage(model) == {"quantized": ["conv"], "float": []}


@pytest.mark.parametrize("options, message", [
    (PrecisionOptions("fp16", int8_float="fp32"), "--int8-float applies to --precision int8 only"),
    (PrecisionOptions("int8", keep_fp32=("*",), int8_float="fp32"), "--keep-fp32 applies to --precision fp16"),
])
def test_int8_float_options_are_validated(options, message):
    with pytest.raises(RTDetrExportError, match=message):
        options.validate()



def test_a_micro_int8_file_records_its_calibration_and_runs_its_unquantized_layers_in_fp16(micro_int8):
    """The fast tier's INT8 (tests/micro.py): `rtdetr-export onnx --precision int8` on a narrow model, opset 17
    (Q/DQ stay FP32 there, with casts around them), two calibration images."""
    from rtdetr_export.artifact import open_artifact

    record = open_artifact(micro_int8)
    assert record.precision == "int8" and record.recipe.calibration["count"] == 2
    assert record.recipe.options().int8_float == "fp16"
    model = onnx.load(str(micro_int8))
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    computed = unquantized_compute(model)
    keep = _fp32_keep_list(record.recipe.details)
    assert [name for name, kind in computed.items() if kind == FLOAT and name not in keep] == []
    assert sum(kind == FLOAT16 for kind in computed.values()) > 0
