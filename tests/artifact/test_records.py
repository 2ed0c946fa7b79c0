"""Artifact records: typed, read in one module, every schema, and never a traceback on a damaged sidecar."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtdetr_export.artifact import (ENGINE_FORMAT, READABLE_SCHEMAS, SCHEMA_VERSION, EngineRecord, OnnxRecord,
                                    RecordError, open_artifact, read_sidecar)
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.model import Sampler
from rtdetr_export.model.config import SizeRange
from paths import TESTS

DATA = TESTS / "data"
SIDECARS = sorted(DATA.glob("schema_*/*.json"))


def _a_sidecar() -> dict:
    return json.loads(SIDECARS[-1].read_text())


@pytest.mark.parametrize("path", SIDECARS, ids=lambda p: p.name)
def test_every_committed_sidecar_reads_as_a_record_and_writes_back_what_it_read(path):
    data = json.loads(path.read_text())
    record = OnnxRecord.from_json(data, str(path))
    assert record.header.schema_version in READABLE_SCHEMAS
    again = OnnxRecord.from_json(record.to_json(), "again")
    assert again.to_json() == record.to_json()
    assert again.sampler is record.sampler and again.graph_options() == record.graph_options()


def test_an_old_sidecar_names_its_sampler_by_method_and_bilinear_op():
    data = _a_sidecar()
    data.pop("sampler", None)
    data["schema_version"] = 3
    for method, op, sampler in [("discrete", None, Sampler.GATHER_NEAREST), ("default", "gather",
                                Sampler.GATHER_BILINEAR), ("default", None, Sampler.GRIDSAMPLE_BILINEAR),
                                ("default", "gridsample", Sampler.GRIDSAMPLE_BILINEAR)]:
        data["method"], data["export"]["bilinear_op"] = method, op
        assert OnnxRecord.from_json(data).sampler is sampler


def test_a_record_rebuilds_the_graph_options_it_was_exported_with():
    data = _a_sidecar()
    data.update(sampler="gridsample-bilinear", input_size=[128, 128],
                input_size_range={"min": [96, 96], "opt": [128, 128], "max": [160, 160]})
    data["export"].update(opset=16, head="detections", top_k=20, batch=None, dynamic_batch=True, dynamic_size=True)
    options = OnnxRecord.from_json(data).graph_options()
    assert options.sampler is Sampler.GRIDSAMPLE_BILINEAR and options.opset == 16
    assert options.size_range == SizeRange((96, 96), (128, 128), (160, 160))
    assert (options.head, options.top_k, options.dynamic_batch, options.verification_batches) == \
        ("detections", 20, True, [1, 4])


def test_the_new_schema_writes_the_sampler_once():
    data = _a_sidecar()
    written = OnnxRecord.from_json(data).to_json()
    assert written["schema_version"] == data["schema_version"] and "bilinear_op" not in written["export"]
    assert written["sampler"] in {s.value for s in Sampler} and written["method"] in ("default", "discrete")
    assert SCHEMA_VERSION == 4


def test_a_newer_schema_is_refused_in_one_line():
    data = _a_sidecar()
    data["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(RecordError, match="upgrade rtdetr-export"):
        OnnxRecord.from_json(data, "model.json")


@pytest.mark.parametrize("field", ["model", "export", "io", "precision", "classes", "input_size"])
def test_a_missing_field_is_named(field):
    data = _a_sidecar()
    del data[field]
    with pytest.raises(RTDetrExportError, match=field):
        OnnxRecord.from_json(data, "model.json")


def test_an_engine_sidecar_is_an_engine_record():
    data = _a_sidecar()
    data.update(format=ENGINE_FORMAT, tensorrt="10.13.0", gpu={"name": "test"},
                profile={"images": {"min": [1, 3, 128, 128], "opt": [2, 3, 128, 128], "max": [4, 3, 128, 128]}},
                latency={"batch": 2, "p50_ms": 1.0, "p90_ms": 1.5, "p99_ms": 2.0, "mean_ms": 1.2,
                         "images_per_s": 1666.7, "iterations": 10})
    record = EngineRecord.from_json(data)
    assert record.batch_range == (1, 4) and record.latency.p50_ms == 1.0 and record.latency.details["iterations"] == 10
    assert EngineRecord.from_json(record.to_json()).to_json() == record.to_json()


# Any JSON value, anywhere a field is read: a one-line RTDetrExportError, never a traceback of another type.
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=3), max_leaves=10)


@settings(max_examples=150, deadline=None)
@given(value=JSON)
def test_any_json_value_as_a_whole_sidecar_is_a_one_line_error(value):
    with pytest.raises(RTDetrExportError) as caught:
        OnnxRecord.from_json(value, "model.json")
    assert "\n" not in str(caught.value)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(_a_sidecar())), value=JSON)
def test_any_json_value_in_any_field_reads_or_is_a_one_line_error(field, value):
    data = _a_sidecar()
    data[field] = value
    try:
        OnnxRecord.from_json(data, "model.json")
    except RTDetrExportError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(min_value=0, max_value=6000))
def test_a_truncated_sidecar_file_is_a_one_line_error(tmp_path_factory, cut):
    text = SIDECARS[-1].read_text().rstrip()  # cut before the closing brace: what is left is never whole JSON
    path = tmp_path_factory.mktemp("sidecar") / "model.json"
    path.write_text(text[:min(cut, len(text) - 1)])
    with pytest.raises(RTDetrExportError) as caught:
        read_sidecar(path)
    assert "\n" not in str(caught.value)


def test_an_engine_without_its_sidecar_is_a_one_line_error(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0" * 16)
    with pytest.raises(RTDetrExportError, match="no readable sidecar model.engine.json"):
        open_artifact(engine)


def _an_ir_sidecar() -> dict:
    data = _a_sidecar()
    data.update(format="rtdetr-export/openvino-ir", schema_version=4,
                ir={"xml": {"file": "m.xml", "sha256": "a" * 64}, "bin": {"file": "m.bin", "sha256": "b" * 64}},
                onnx={"file": "m.onnx", "sha256": "c" * 64, "verification_passed": True},
                runtime={"openvino": "2026.4.1", "weights": "fp16", "inference_precision_hint": "f32",
                         "cpu": "AMD EPYC", "cpu_bf16": False}, op_census={"MatMul": 3})
    return data


def test_an_openvino_ir_sidecar_is_an_openvino_record():
    from rtdetr_export.artifact import OpenVinoRecord, record_from_json

    record = record_from_json(_an_ir_sidecar(), "ir")
    assert isinstance(record, OpenVinoRecord)
    assert (record.ir.bin, record.onnx.file, record.inference_hint, record.runtime.cpu_bf16) == ("m.bin", "m.onnx",
                                                                                                "f32", False)
    assert record.nncf is None  # FP32: no NNCF recipe
    assert OpenVinoRecord.from_json(record.to_json(), "again").to_json() == record.to_json()


@pytest.mark.parametrize("field, value, message", [
    ("runtime", None, "missing field 'runtime'"),
    ("ir", {"xml": {"file": "m.xml"}, "bin": {"file": "m.bin", "sha256": "b" * 64}}, "missing field 'sha256'"),
    ("runtime", {"openvino": "x", "weights": "int4", "inference_precision_hint": "f32"}, "unknown weights 'int4'"),
])
def test_a_damaged_ir_sidecar_is_a_one_line_error(field, value, message):
    from rtdetr_export.artifact import record_from_json

    data = _an_ir_sidecar()
    if value is None:
        del data[field]
    else:
        data[field] = value
    with pytest.raises(RecordError, match=message):
        record_from_json(data, "ir")


def _a_selection() -> dict:
    from rtdetr_export.artifact.records import CandidateResult, SelectionRecord

    rows = [CandidateResult("ort-fp32", "fp32", "onnxruntime", None, "ok", p50_ms=80.0, throughput_ips=12.5, ap=0.64,
                            ap_delta=0.0, size_bytes=5_000_000, verdict="export: pass (fp32); here: pass (fp32)",
                            on_front=False, within_budget=True),
            CandidateResult("ov-bf16:int8", "int8_cpu", "openvino", "bf16", "skipped",
                            "openvino is not installed (pip install openvino)")]
    return SelectionRecord("ort-fp32", "onnxruntime", None, 0.005, "ort-fp32", 0.64, "val.json", 200, (1, 4), 2,
                           "AMD EPYC", "2026-12-07T12:00:00+00:00", rows).to_json()


def test_a_chosen_file_s_sidecar_carries_its_selection_and_writes_back_what_it_read():
    data = {**_a_sidecar(), "selection": _a_selection()}
    record = OnnxRecord.from_json(data, "chosen.json")
    assert record.selection.chosen == "ort-fp32" and record.selection.batches == (1, 4)
    assert [c.status for c in record.selection.candidates] == ["ok", "skipped"]
    assert record.selection.candidates[1].p50_ms is None and record.selection.candidates[1].precision_hint == "bf16"
    assert OnnxRecord.from_json(record.to_json(), "again").to_json() == record.to_json()
    assert record.to_json()["selection"] == data["selection"]
    assert OnnxRecord.from_json(_a_sidecar(), "plain").selection is None  # every other sidecar: no selection


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("chosen"), "missing field 'chosen'"),
    (lambda s: s.update(batches=[1]), "batches must be [latency batch, throughput batch]"),
    (lambda s: s["candidates"][0].update(p50_ms="fast"), "field 'p50_ms' has the wrong type"),
])
def test_a_damaged_selection_is_a_one_line_record_error(damage, message):
    selection = _a_selection()
    damage(selection)
    with pytest.raises(RecordError, match=message.replace("[", r"\[").replace("]", r"\]")):
        OnnxRecord.from_json({**_a_sidecar(), "selection": selection}, "chosen.json")
