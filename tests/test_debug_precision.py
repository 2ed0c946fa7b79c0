"""debug-precision: rank the layers that break a reduced-precision artifact by the error each adds, name the RT-DETR
part each belongs to, and search the fewest parts to keep in float that bring it within its limits."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rtdetr_export.cli import main
from rtdetr_export.model.parts import OTHER, part_of
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
from rtdetr_export.precision import PrecisionOptions
from rtdetr_export.weights import load_model


@pytest.mark.parametrize("node, label, pattern", [
    ("/model/backbone/res_layers.2/blocks.0/branch2b/conv/Conv", "backbone stage 2", "/model/backbone/res_layers.2/*"),
    ("/model/encoder/encoder.0/layers.0/self_attn/MatMul", "encoder AIFI 0 (intra-scale attention)",
     "/model/encoder/encoder.0/*"),
    ("/model/encoder/pan_blocks.1/conv1/conv/Conv", "encoder CCFM bottom-up pan_blocks.1",
     "/model/encoder/pan_blocks.1/*"),
    ("/model/decoder/enc_score_head/MatMul_output_0", "query selection (enc_score_head)",
     "/model/decoder/enc_score_head/*"),
    ("/model/decoder/layers.1/cross_attn/sampling_offsets/MatMul", "decoder layer 1 cross-attention (deformable)",
     "/model/decoder/layers.1/cross_attn/*"),
    ("/model/decoder/dec_bbox_head.2/layers.2/MatMul_output_0", "decoder layer 2 box refinement",
     "/model/decoder/dec_bbox_head.2/*"),
    ("/model/decoder/dec_score_head.0/MatMul_output_0_QuantizeLinear", "decoder layer 0 score head",
     "/model/decoder/dec_score_head.0/*"),
    ("/model/decoder/Log_1", "box refinement (inverse sigmoid)", "/model/decoder/[A-Z]*"),
])
def test_node_names_map_to_rtdetr_parts_and_the_pattern_that_covers_them(node, label, pattern):
    assert part_of(node).label == label and part_of(node).pattern == pattern


def test_names_without_a_model_scope_are_other():
    assert part_of("graph_input_cast0") == OTHER
