"""The FLOP count of an ONNX graph (bench/flops.py): hand-counted graphs, and our graphs against PyTorch's counter.

1 multiply-add = 2 FLOPs; convolutions and matrix products are counted, nothing else (the convention of
torch.utils.flop_counter, which counts matmul and convolution only, so the two can be compared).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch.utils.flop_counter import FlopCounterMode

from rtdetr_export.bench.flops import FlopCount, count_flops, node_flops


def _weights(name: str, *shape: int, dtype=np.float32):
    return numpy_helper.from_array(np.zeros(shape, dtype=dtype), name)


def _model(nodes, inputs, outputs, initializers):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv_matmul_gemm_graph():
    """x [batch, 4, 8, 8] -> grouped Conv -> Relu -> Reshape [batch, 6, 64] -> MatMul with weights [64, 5] ->
    batched MatMul with its own transpose -> Flatten -> Gemm (transB) -> y [batch, 7]."""
    nodes = [
        helper.make_node("Conv", ["x", "w_conv", "b_conv"], ["c"], group=2, pads=[1, 1, 1, 1]),  # [b, 6, 8, 8]
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Reshape", ["r", "shape"], ["r3"]),  # [b, 6, 64]
        helper.make_node("MatMul", ["r3", "w_mm"], ["m"]),  # [b, 6, 5]
        helper.make_node("Transpose", ["m"], ["mt"], perm=[0, 2, 1]),  # [b, 5, 6]
        helper.make_node("MatMul", ["m", "mt"], ["mm"]),  # [b, 6, 6], activations x activations
        helper.make_node("Flatten", ["mm"], ["f"]),  # [b, 36]
        helper.make_node("Gemm", ["f", "w_gemm", "b_gemm"], ["y"], transB=1),  # [b, 7]
    ]
    initializers = [_weights("w_conv", 6, 2, 3, 3), _weights("b_conv", 6), _weights("w_mm", 64, 5),
                    _weights("w_gemm", 7, 36), _weights("b_gemm", 7),
                    numpy_helper.from_array(np.array([0, 6, 64], dtype=np.int64), "shape")]
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 7])], initializers)


def test_a_hand_built_graph_counts_each_conv_matmul_and_gemm_by_hand():
    count = count_flops(_conv_matmul_gemm_graph(), {"x": (3, 4, 8, 8)})
    batch = 3
    # Conv, 2 groups: each of the 6 x 8 x 8 outputs sums (4 / 2 input channels) x 3 x 3 products; bias not counted.
    conv = batch * 6 * 8 * 8 * (2 * 3 * 3)
    # MatMul [6, 64] x [64, 5] per image, then [6, 5] x [5, 6] per image (the batch broadcast as numpy does).
    matmul = batch * (6 * 5 * 64) + batch * (6 * 6 * 5)
    gemm = batch * 7 * 36  # [batch, 36] x [36, 7]: transB reads the weights [7, 36] transposed
    assert count.multiply_adds == {"Conv": conv, "MatMul": matmul, "Gemm": gemm}
    assert count.flops == 2 * (conv + matmul + gemm) == 2 * 3 * (6912 + 1920 + 180 + 252)
    assert count.batch == batch and count.per_image == count.flops / batch
    # What is left out is listed, and the ops that compute (the Relu) counted by their output elements.
    assert count.not_counted == {"Flatten": 1, "Relu": 1, "Reshape": 1, "Transpose": 1}
    assert count.other_outputs == batch * 6 * 8 * 8
    assert FlopCount.from_json(count.to_json()) == count
    assert "1 multiply-add = 2 FLOPs" in count.to_json()["convention"]


def test_each_counted_node_has_its_own_flops_by_name_and_they_sum_to_the_graph_s():
    model = _conv_matmul_gemm_graph()
    for index, node in enumerate(model.graph.node):
        node.name = f"/model/n{index}/{node.op_type}"
    per_node = node_flops(model, {"x": (3, 4, 8, 8)})
    # the same hand counts as above, per node: only Conv, the two MatMuls and Gemm are counted
    assert per_node == {"/model/n0/Conv": 2 * 3 * 6 * 8 * 8 * 18, "/model/n3/MatMul": 2 * 3 * 6 * 5 * 64,
                        "/model/n5/MatMul": 2 * 3 * 6 * 6 * 5, "/model/n7/Gemm": 2 * 3 * 7 * 36}
    assert sum(per_node.values()) == count_flops(model, {"x": (3, 4, 8, 8)}).flops


def test_conv_transpose_counts_each_input_element_times_its_kernel_and_groups():
    # x [1, 4, 5, 5] -> ConvTranspose, 2 groups, weights [4, 3, 2, 2] (Cin, Cout / groups, kernel), stride 2 ->
    # [1, 6, 10, 10]: each input element is scattered through 3 x 2 x 2 products.
    model = _model([helper.make_node("ConvTranspose", ["x", "w"], ["y"], group=2, strides=[2, 2])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 10, 10])], [_weights("w", 4, 3, 2, 2)])
    count = count_flops(model, {"x": (1, 4, 5, 5)})
    assert count.multiply_adds == {"ConvTranspose": 4 * 5 * 5 * (3 * 2 * 2)}
    # PyTorch's counter, on the same layer, agrees.
    layer = torch.nn.ConvTranspose2d(4, 6, 2, stride=2, groups=2, bias=False)
    with FlopCounterMode(display=False) as counter:
        layer(torch.zeros(1, 4, 5, 5))
    assert counter.get_total_flops() == count.flops


def test_integer_products_count_as_their_float_ops():
    nodes = [helper.make_node("MatMulInteger", ["a", "w"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("a", TensorProto.UINT8, ["n", 8])],
                   [helper.make_tensor_value_info("y", TensorProto.INT32, ["n", 3])],
                   [_weights("w", 8, 3, dtype=np.int8)])
    assert count_flops(model, {"a": (2, 8)}).multiply_adds == {"MatMulInteger": 2 * 3 * 8}


def test_an_input_without_a_shape_is_an_error():
    with pytest.raises(ValueError, match="no shape given for the graph input 'x'"):
        count_flops(_conv_matmul_gemm_graph(), {})


def _pytorch_count(model, size) -> dict[str, int]:
    """torch.utils.flop_counter's FLOPs (matmul and convolution only) of the deploy-fused model on one image."""
    from rtdetr_export.model import prepare_for_deploy

    fused = prepare_for_deploy(copy.deepcopy(model)).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fused(torch.rand(1, 3, *size))
    return {str(op): flops for op, flops in counter.get_flop_counts()["Global"].items()}


def test_the_micro_graph_counts_what_pytorch_counts(micro_fp32):
    from micro import MICRO_SIZE, micro_model

    ours = count_flops(micro_fp32, {"images": (1, 3, MICRO_SIZE, MICRO_SIZE)})
    theirs = _pytorch_count(micro_model(), (MICRO_SIZE, MICRO_SIZE))
    assert 2 * ours.multiply_adds["Conv"] == theirs["aten.convolution"]  # every convolution, exactly
    # The rest differs by the sampler: the graph's gather-bilinear weighted sum is a MatMul (30 queries x 4 heads
    # x 8 channels x 48 points, in each of 2 layers); PyTorch's grid_sample path multiplies and sums elementwise.
    assert ours.flops - sum(theirs.values()) == 2 * (30 * 4 * 8 * 48) * 2
    assert abs(ours.flops / sum(theirs.values()) - 1) < 0.005


def test_fp16_and_int8_files_count_what_the_fp32_file_counts(micro_fp32, micro_fp16, micro_int8):
    shapes = {"images": (2, 3, 128, 128)}
    fp32 = count_flops(micro_fp32, shapes)
    assert count_flops(micro_fp16, shapes).multiply_adds == fp32.multiply_adds  # Casts around the same products
    assert count_flops(micro_int8, shapes).multiply_adds == fp32.multiply_adds  # Q/DQ around the same products


@pytest.mark.slow
def test_the_r18vd_graph_counts_what_pytorch_counts_at_every_batch(tmp_path):
    from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
    from rtdetr_export.weights import load_model

    model = load_model(preset="r18vd", method="discrete")  # seeded random weights: FLOPs do not depend on them
    path = tmp_path / "r18vd.onnx"
    export_onnx(model, path, OnnxExportOptions(dynamic_batch=True, verify=False))  # as bench exports it
    one, two = (count_flops(path, {"images": (b, 3, 640, 640)}) for b in (1, 2))
    assert one.per_image == two.per_image and two.flops == 2 * one.flops
    theirs = _pytorch_count(model, (640, 640))
    assert 2 * one.multiply_adds["Conv"] == theirs["aten.convolution"]
    # The discrete sampler's graph does the products PyTorch's model does (measured: equal to the FLOP).
    assert abs(one.flops / sum(theirs.values()) - 1) < 0.005
