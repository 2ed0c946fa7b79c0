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
from paths import TESTS


@pytest.mark.parametrize("node, label, pattern", [
    ("/model/backbone/res_layers.2/blocks.0/branch2b/conv/Conv", "backbone stage 2", "/model/backbone/res_layers.2/*"),
    ("/model/backbone/pool/MaxPool", "backbone stem max pool", "/model/backbone/pool/*"),
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


@pytest.fixture(scope="module")
def broken_int8(tmp_path_factory):
    """tiny INT8 made badly on purpose: no default exclusions (heads, selection, attention all INT8), FP32
    elsewhere, unverified."""
    path = tmp_path_factory.mktemp("broken") / "tiny_int8.onnx"
    precision = PrecisionOptions("int8", calib_count=4, int8_default_exclusions=False, int8_float="fp32")
    export_onnx(load_model(preset="tiny"), path, OnnxExportOptions(verify=False, precision=precision))
    return path


@pytest.mark.slow  # one verified re-conversion per search step: minutes on a loaded 2-core machine
def test_debug_precision_names_the_culprit_parts_and_finds_a_float_set_that_passes(broken_int8):
    # Judged by the FP16 limits: an INT8 file asked to agree with FP32 as closely as FP16 does.
    result = CliRunner().invoke(main, ["debug-precision", str(broken_int8), "--count", "2", "--max-parts", "40",
                                       "--limits", "fp16", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert not report["baseline"]["passed"] and report["baseline"]["failures"]
    worst = report["layers"][0]
    assert worst["precision"] == "int8" and worst["part"] != OTHER.label and worst["introduced"] > 0
    assert report["first_jump"]["part"] != OTHER.label
    chosen = report["float_parts"]
    assert chosen and set(chosen) <= {p["part"] for p in report["parts"]}
    assert any(t["passed"] and sorted(t["parts"]) == sorted(chosen) for t in report["trials"])
    patterns = {p["part"]: p["pattern"] for p in report["parts"]}
    assert report["flags"] == [token for part in chosen for token in ("--int8-exclude", patterns[part])]
    assert "--no-int8-default-exclusions" in report["command_flags"]


def test_debug_precision_refuses_an_fp32_file_in_one_line():
    fp32 = TESTS / "data" / "schema_examples" / "micro_raw_v1.onnx"  # one of ours, FP32
    result = CliRunner().invoke(main, ["debug-precision", str(fp32)])
    assert result.exit_code == 1 and result.stderr.startswith("error:") and "is fp32" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
