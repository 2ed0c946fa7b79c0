"""Per-layer errors of a reduced-precision graph against its FP32 graph (verify/layerwise.py, debug-precision's
ranking): every float tensor both graphs hold, in the reference's order, with the error each node adds."""

from __future__ import annotations

import numpy as np
import onnx

from rtdetr_export.artifact import make_feed
from rtdetr_export.imaging.inputs import synthetic_images
from rtdetr_export.verify.layerwise import first_jump, layer_errors


def _feeds(count: int = 2):
    images = synthetic_images(count, (128, 128), seed=5)
    return [make_feed("raw", images[i:i + 1], [(128, 128)]) for i in range(count)]


def test_a_graph_against_itself_adds_no_error_anywhere(micro_fp32):
    graph = onnx.load(str(micro_fp32))
    rows = layer_errors(graph, graph, _feeds(1))
    assert rows and all(row.error == 0.0 and row.precision == "fp32" for row in rows)
    assert first_jump(rows) is None  # no reduced-precision node to blame


def test_an_int8_graph_names_its_quantized_layers_and_the_first_that_jumps(micro_fp32, micro_int8):
    rows = layer_errors(onnx.load(str(micro_fp32)), onnx.load(str(micro_int8)), _feeds())
    assert "int8" in {row.precision for row in rows}
    assert all(np.isfinite(row.error) and row.error >= 0 for row in rows)
    jump = first_jump(rows)
    assert jump is not None and jump.precision != "fp32" and jump.introduced > 0
