"""FP16 and INT8 split artifacts: both graphs converted, each calibrated on its own inputs, its recipe in the sidecar,
and the whole artifact verified against PyTorch by the detection agreement the single file is judged by."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from conftest import SHAPES_MODEL
from rtdetr_export.artifact import PrecisionOptions, SplitRecord, open_artifact
from rtdetr_export.cli import main
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.onnx_graph import FLOAT16, element_types
from rtdetr_export.pipeline import OnnxExportOptions, export_split
from rtdetr_export.verify import AgreementThresholds, thresholds_for
from rtdetr_export.weights import load_model
from micro import micro_model


def _check_converted(sidecar: Path, precision: str) -> SplitRecord:
    """What every reduced-precision split must be, read from its files: both graphs converted (FP16 tensors, and
    for INT8 Q/DQ pairs), float32 at the artifact's edges, one recipe per graph, verified by agreement."""
    record = open_artifact(sidecar)
    assert isinstance(record, SplitRecord) and record.precision == precision
    data = json.loads(sidecar.read_text())
    for name, graph in record.graphs.items():
        model = onnx.load(str(sidecar.parent / graph.file))
        ops = Counter(node.op_type for node in model.graph.node)
        assert FLOAT16 in element_types(model).values(), f"{name}: no FP16 tensor"
        if precision == "int8":
            assert ops["QuantizeLinear"] >= 1 and ops["DequantizeLinear"] >= 1, name
        assert {spec.dtype for spec in graph.io.inputs + graph.io.outputs} == {"float32"}, name
        recipe = data["graphs"][name]["precision_recipe"]
        assert recipe == graph.recipe.details and graph.recipe.precision == precision
        assert graph.recipe.calibration["count"] == 16  # every graph saw every calibration image
    verification = record.verification
    assert verification.passed and verification.precision == precision
    assert verification.candidate == "onnxruntime-cpu-fp16-emulated-split"  # FP16 rounding, emulated on the CPU
    assert isinstance(thresholds_for(precision), AgreementThresholds)
    assert verification.thresholds == vars(thresholds_for(precision))
    assert [run.batch for run in verification.runs] == [1, 4]
    return record


def test_an_fp16_split_converts_both_graphs_and_is_verified_by_agreement(tmp_path):
    # Not simplified: onnxslim over both graphs is most of the export's time, and is the slow tier's to prove.
    result = export_split(micro_model(), tmp_path / "micro.onnx",
                          OnnxExportOptions(dynamic_batch=True, simplify=False, precision=PrecisionOptions("fp16")))
    _check_converted(result.sidecar, "fp16")
    verified = CliRunner().invoke(main, ["verify", str(result.decoder)])  # again, later, from the record alone
    assert verified.exit_code == 0, verified.output
    assert "onnxruntime-cpu-fp16-emulated-split" in verified.output and verified.output.rstrip().endswith("PASS")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_a_trained_split_keeps_its_detections_in_reduced_precision(tmp_path, precision):
    result = export_split(load_model(SHAPES_MODEL), tmp_path / "shapes.onnx",
                          OnnxExportOptions(dynamic_batch=True, precision=PrecisionOptions(precision)))
    record = _check_converted(result.sidecar, precision)
    if precision == "int8":  # the default exclusions are name patterns: each finds its layers in one graph or other
        excluded = {name: set(graph.recipe.details["excluded_nodes"]) for name, graph in record.graphs.items()}
        assert any("enc_score_head" in node for node in excluded["encoder"])
        assert any("dec_score_head" in node for node in excluded["decoder"])


@pytest.mark.slow
def test_a_node_pattern_that_names_neither_graph_is_refused_and_nothing_is_written(tmp_path):
    options = OnnxExportOptions(precision=PrecisionOptions("int8", int8_exclude=("*/no_such_layer/*",)))
    with pytest.raises(RTDetrExportError, match="matches no node of either split graph") as error:
        export_split(micro_model(), tmp_path / "micro.onnx", options)
    assert "\n" not in str(error.value) and list(tmp_path.iterdir()) == []
