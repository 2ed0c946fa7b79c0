"""debug-precision compares an FP16/INT8 artifact with the FP32 graph it was made from: the same sampler and the same
size range, rebuilt from the artifact's record (the regression: it used to re-export with the default sampler and a
fixed size, so a GridSample or dynamic-size artifact was compared with, and re-converted from, another graph)."""

from __future__ import annotations

import onnx
import pytest

from rtdetr_export.artifact import GraphOptions, PrecisionOptions
from rtdetr_export.model import Sampler, SizeRange
from rtdetr_export.pipeline import OnnxExportOptions, debug_precision as debug_module, export_onnx
from rtdetr_export.weights import load_model
from micro import MICRO



class Compared(Exception):
    """Stops debug-precision once it has handed over the FP32 graph it compares with."""


@pytest.fixture
def captured_fp32(monkeypatch):
    graphs: list[onnx.ModelProto] = []

    def capture(fp32, artifact, feeds):
        graphs.append(fp32)
        raise Compared

    monkeypatch.setattr(debug_module, "layer_errors", capture)
    return graphs


def _image_dims(graph: onnx.ModelProto) -> list:
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    return [d.dim_param or d.dim_value for d in dims]


@pytest.mark.parametrize("sampler, size_range", [
    (Sampler.GRIDSAMPLE_BILINEAR, None),
    (Sampler.GATHER_BILINEAR, SizeRange((96, 96), (128, 128), (160, 160))),
], ids=["gridsample", "dynamic-size"])
@pytest.mark.slow
def test_debug_precision_compares_with_the_fp32_graph_of_the_same_sampler_and_size_range(
        tmp_path, captured_fp32, sampler, size_range):
    model = load_model(preset="tiny", image_size=128, **MICRO)
    artifact = tmp_path / "int8.onnx"
    options = OnnxExportOptions(opset=17, dynamic_batch=True, sampler=sampler, size_range=size_range, verify=False,
                                precision=PrecisionOptions("int8", calib_count=2))
    export_onnx(model, artifact, options)
    with pytest.raises(Compared):
        debug_module.debug_precision(artifact, count=1)
    fp32 = captured_fp32[0]
    ops = {node.op_type for node in fp32.graph.node}
    assert ("GridSample" in ops) == sampler.has_gridsample
    assert "QuantizeLinear" not in ops
    if size_range is None:
        assert _image_dims(fp32)[2:] == [128, 128]
    else:
        assert all(isinstance(d, str) for d in _image_dims(fp32)[2:])  # height and width are graph dimensions


@pytest.mark.slow
def test_a_record_rebuilds_the_options_debug_precision_re_exports_with(tmp_path):
    model = load_model(preset="tiny", image_size=128, **MICRO)
    options = OnnxExportOptions(opset=16, dynamic_batch=True, sampler=Sampler.GRIDSAMPLE_BILINEAR,
                                size_range=SizeRange((96, 96), (128, 128), (160, 160)), verify=False)
    record = export_onnx(model, tmp_path / "m.onnx", options).record
    assert record.graph_options() == GraphOptions(opset=16, batch=1, dynamic_batch=True, head="raw", top_k=300,
                                                  simplify=True, sampler=Sampler.GRIDSAMPLE_BILINEAR,
                                                  size_range=options.size_range)
