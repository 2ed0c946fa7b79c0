"""debug-precision on a D-FINE INT8 artifact (the micro D-FINE, tests/micro.py): it compares with the FP32 D-FINE
graph of the same sampler and size, rebuilt from the record, and names the layers after D-FINE's parts (HGNetv2,
the gates, the LQE, the FDR integral), each with the pattern that keeps it in float."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rtdetr_export.artifact import open_artifact
from rtdetr_export.cli import main
from rtdetr_export.model.parts import OTHER
from rtdetr_export.pipeline import debug_precision as debug_module
from rtdetr_export.verify.layerwise import layer_errors

# Parts only RT-DETRv2's graphs have: a D-FINE report naming one would have mislabelled D-FINE's nodes.
RTDETR_ONLY = ("backbone stem", "backbone stage 0", "backbone stage 1", "backbone stage 2", "backbone stage 3")


class Compared(Exception):
    """Stops debug-precision once the layer-wise comparison is done."""


@pytest.mark.slow  # re-export and layer-wise run of the micro D-FINE: ~4 s
def test_a_d_fine_int8_file_is_compared_with_its_fp32_d_fine_graph_layer_by_layer(micro_dfine_int8, monkeypatch):
    seen = {}

    def compare_then_stop(fp32, artifact, feeds):
        seen["fp32"], seen["rows"] = fp32, layer_errors(fp32, artifact, feeds)
        raise Compared

    monkeypatch.setattr(debug_module, "layer_errors", compare_then_stop)
    with pytest.raises(Compared):
        debug_module.debug_precision(micro_dfine_int8, count=1)

    record = open_artifact(micro_dfine_int8)
    fp32 = seen["fp32"]
    ops = {node.op_type for node in fp32.graph.node}
    assert "QuantizeLinear" not in ops and ("GridSample" in ops) == record.sampler.has_gridsample
    dims = [d.dim_value for d in fp32.graph.input[0].type.tensor_type.shape.dim[2:]]
    assert tuple(dims) == tuple(record.input_size)
    names = [node.name for node in fp32.graph.node]
    assert any("/lqe_layers." in n for n in names) and any(n.startswith("/model/backbone/stages.") for n in names)

    reduced = [row for row in seen["rows"] if row.precision != "fp32"]
    parts = {row.part for row in reduced}
    assert {"backbone stem (HGNetv2)", "backbone stage 3 (HGNetv2)",
            "decoder layer 1 gate (D-FINE's cross-attention residual)", "decoder initial box head (D-FINE)",
            "decoder layer 1 LQE (localization quality)", "FDR edge distributions (softmax, integral)"} <= parts
    assert not parts & set(RTDETR_ONLY)
    # Only the graph's own boundary (the input cast, an output identity) is outside every model scope.
    assert all(row.part != OTHER.label or not row.node.startswith("/model/") for row in reduced)
    # The FDR integral is an INT8 default exclusion: it may run in the FP16 between the quantized layers, never INT8.
    assert all(row.precision != "int8" for row in reduced if row.part.startswith("FDR"))


@pytest.mark.slow  # a layer-wise run, the verification and two trials on the micro D-FINE: ~15 s
def test_debug_precision_runs_end_to_end_on_a_d_fine_int8_file(micro_dfine_int8):
    result = CliRunner().invoke(main, ["debug-precision", str(micro_dfine_int8), "--count", "1", "--max-parts", "2",
                                       "--json"])
    report = json.loads(result.stdout)
    assert report["precision"] == "int8" and report["layers"]
    labels = {row["part"] for row in report["layers"]}
    assert not labels & set(RTDETR_ONLY) and "backbone stage 2 (HGNetv2)" in labels
    assert 0 < len(report["parts"]) <= 2 and all(p["pattern"] for p in report["parts"])
    if report["baseline"]["passed"]:
        assert result.exit_code == 0 and report["trials"] == []
    else:  # the search ran from the D-FINE FP32 graph: its first trial keeps every ranked part in float
        assert report["trials"][0]["parts"] == [p["part"] for p in report["parts"]]
        if report["passed"]:
            assert result.exit_code == 0 and report["flags"]
        else:
            assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
            assert result.stderr.startswith("error: no set of the 2 worst parts")
