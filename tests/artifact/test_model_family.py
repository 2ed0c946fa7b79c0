"""A sidecar names its detector family, so the record rebuilds a D-FINE config (and so its reference model)."""

from __future__ import annotations

import json

import pytest

from rtdetr_export.artifact import OnnxRecord
from rtdetr_export.artifact.records.contract import ModelRecord, SourceRecord
from rtdetr_export.artifact.records.fields import RecordError
from rtdetr_export.model import DFineConfig, ModelConfig, dfine_preset, preset
from paths import TESTS


def _a_sidecar() -> dict:
    return json.loads(sorted((TESTS / "data").glob("schema_*/*.json"))[-1].read_text())


@pytest.mark.parametrize("name", ["dfine_n", "deim_dfine_s"])
def test_a_d_fine_record_reads_back_as_the_same_d_fine_config(name):
    config = dfine_preset(name, num_classes=3, id2label={0: "a", 1: "b", 2: "c"}, image_size=(320, 384))
    record = ModelRecord(SourceRecord("random", seed=0), config)
    data = json.loads(json.dumps(record.to_json()))  # through JSON, as a sidecar is
    assert data["family"] == "dfine"
    again = ModelRecord.from_json(data, "test")
    assert isinstance(again.config, DFineConfig) and again.config == config
    assert again.config.model_name == config.model_name


def test_an_rt_detr_record_says_rtdetr_and_a_record_without_a_family_is_rt_detr():
    data = ModelRecord(SourceRecord("random", seed=0), preset("tiny")).to_json()
    assert data["family"] == "rtdetr"
    del data["family"]  # as every sidecar written before D-FINE
    again = ModelRecord.from_json(data, "test")
    assert type(again.config) is ModelConfig and again.config == preset("tiny")


def test_an_unknown_family_is_a_one_line_error_naming_it():
    data = _a_sidecar()
    data["model"]["family"] = "rf_detr"
    with pytest.raises(RecordError) as info:
        OnnxRecord.from_json(data, "x.json")
    assert "unknown model family 'rf_detr'" in str(info.value) and "\n" not in str(info.value)


def test_d_fine_fields_under_the_rt_detr_family_are_refused_not_dropped():
    data = ModelRecord(SourceRecord("random", seed=0), dfine_preset("dfine_n")).to_json()
    data["family"] = "rtdetr"
    with pytest.raises(RecordError, match="unknown model config fields"):
        ModelRecord.from_json(data, "test")
