"""Artifacts written by earlier versions (sidecar schemas 1, 2 and 3, tests/data/schema_examples/) still open as
typed records, verify and show in ``inspect``.

All are the same micro model (a tiny-shaped model narrowed to 0.4 M parameters at 128 px, seeded random weights,
raw head, dynamic batch); tests/data/schema_examples/README.md says which commit wrote each and how.
- micro_raw_v1: schema 1, exported before the typed results (commit c64ae5f); it reads its sampling points with
  GridSample (it predates ``--bilinear-op``, so its record names no bilinear op).
- micro_raw_v2 (schema 2) and micro_raw_v3 (schema 3): the same model exported with the gather sampler.
- micro_dynsize_v3: schema 3, dynamic input size 96x96..160x160 (opt 128x128), gather sampler.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtdetr_export.artifact import OnnxRecord, open_artifact, read_metadata, read_sidecar, load_onnx
from rtdetr_export.cli import main
from rtdetr_export.model import SizeRange
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.pipeline import describe_onnx, verify_artifact
from rtdetr_export.verify import Verification
from paths import TESTS

EXAMPLES = TESTS / "data" / "schema_examples"


@dataclass(frozen=True)
class Example:
    """A committed artifact and what its record must say."""

    name: str
    schema: int
    sampler: Sampler
    size_range: SizeRange | None = None
    # (batch, [height, width] or None) of each recorded verification run
    runs: tuple[tuple[int, list[int] | None], ...] = ((1, None), (4, None))

    @property
    def path(self) -> Path:
        return EXAMPLES / f"{self.name}.onnx"


DYNAMIC = SizeRange((96, 96), (128, 128), (160, 160))
CASES = [
    Example("micro_raw_v1", 1, Sampler.GRIDSAMPLE_BILINEAR),
    Example("micro_raw_v2", 2, Sampler.GATHER_BILINEAR),
    Example("micro_raw_v3", 3, Sampler.GATHER_BILINEAR),
    Example("micro_dynsize_v3", 3, Sampler.GATHER_BILINEAR, DYNAMIC,
            ((1, [128, 128]), (4, [128, 128]), (1, [96, 96]), (1, [160, 160]))),
]
V1 = CASES[0]


@pytest.fixture(params=CASES, ids=[case.name for case in CASES])
def example(request) -> Example:
    return request.param


def test_the_committed_examples_are_their_schemas(example):
    assert open_artifact(example.path).header.schema_version == example.schema
    assert json.loads(example.path.with_suffix(".json").read_text())["schema_version"] == example.schema
    assert read_metadata(load_onnx(example.path))["schema_version"] == example.schema


def test_every_schema_still_written_is_covered():
    """Each schema a reader accepts, other than the one written now, has an example here."""
    from rtdetr_export.artifact import READABLE_SCHEMAS, SCHEMA_VERSION

    assert {case.schema for case in CASES} == set(READABLE_SCHEMAS) - {SCHEMA_VERSION}


def test_an_example_opens_as_a_typed_record_with_its_sampler(example):
    record = open_artifact(example.path)
    assert isinstance(record, OnnxRecord)
    assert record.sampler is example.sampler and record.method == "default"
    assert record.sampler.has_gridsample == (example.sampler is Sampler.GRIDSAMPLE_BILINEAR)
    # The record's sampler is the graph's: GridSample only in the file that reads with it.
    assert (record.op_census.get("GridSample", 0) > 0) == record.sampler.has_gridsample
    assert ("GridSample" in {n.op_type for n in load_onnx(example.path).graph.node}) == record.sampler.has_gridsample
    assert record.header.format == "rtdetr-export/onnx" and record.precision == "fp32"
    assert record.head == "raw" and record.export.dynamic_batch and record.static_batch is None
    assert record.export.opset == 17 and record.export.simplifier == "onnxslim 0.1.98"
    assert record.input_size == (128, 128) and record.input_size_range == example.size_range
    assert record.export.dynamic_size == (example.size_range is not None)
    assert record.classes == ["class_0", "class_1", "class_2", "class_3"]
    assert record.model.source.format == "random" and record.model.source.seed == 0
    config = record.model.config
    assert (config.num_classes, config.d_model, config.num_queries) == (4, 32, 30)
    assert record.io.input_names == ["images"] and record.io.output_names == ["logits", "pred_boxes"]
    assert record.io["logits"].shape[1:] == (30, 4)
    # The sidecar holds the same record as the ONNX metadata.
    assert read_sidecar(example.path.with_suffix(".json")).to_json() == record.to_json()
    # Written back today, the sampler is one top-level value and export.bilinear_op is gone (schema 4).
    again = record.to_json()
    assert again["sampler"] == example.sampler.value and "bilinear_op" not in again["export"]
    assert OnnxRecord.from_json(again).sampler is example.sampler


def test_all_examples_hold_the_same_model():
    """Schemas 2 and 3 were exported from the schema-1 file's model: the configs agree (version aside)."""
    configs = [open_artifact(case.path).model.config.to_dict() for case in CASES]
    for config in configs:
        config.pop("version", None)
        config.pop("image_size", None)
    assert all(config == configs[0] for config in configs[1:])


def test_a_verification_reads_as_typed_results(example):
    record = read_metadata(load_onnx(example.path))["verification"]
    verification = Verification.from_json(record)
    assert verification.passed and verification.batches == [batch for batch, _ in example.runs]
    assert [run.input_size for run in verification.runs] == [size for _, size in example.runs]
    assert all(run.kind == "tensor" for run in verification.runs)
    logits = verification.runs[0].outputs["logits"]
    assert logits.metric == "max_abs_unflipped" and logits.value == record["runs"][0]["outputs"]["logits"]["max_abs"]
    assert logits.stats["max_abs"] == logits.value and logits.threshold == 1e-4
    # Everything the old record held is still there when it is written back, plus the metric names.
    again = verification.to_json()
    for old_run, new_run in zip(record["runs"], again["runs"]):
        for name, entry in old_run["outputs"].items():
            assert entry.items() <= new_run["outputs"][name].items()
    # The typed record carries the same verification.
    assert open_artifact(example.path).verification.to_json() == again


def test_a_schema_1_verification_names_its_metric_only_when_written_back():
    """Schema 1 did not record the judged metric; the reader infers it (max_abs_unflipped for raw outputs)."""
    record = read_metadata(load_onnx(V1.path))["verification"]
    assert all("metric" not in entry for run in record["runs"] for entry in run["outputs"].values())
    again = Verification.from_json(record).to_json()
    assert all(entry["metric"] for run in again["runs"] for entry in run["outputs"].values())


def test_inspect_shows_an_example(example):
    description = describe_onnx(example.path)
    assert description.record is not None and description.census_matches_record
    assert description.record.verification.passed
    provenance = description.to_json()["provenance"]
    assert provenance["verification"]["passed"] is True
    assert provenance["schema_version"] == example.schema and provenance["sampler"] == example.sampler.value
    assert provenance["method"] == "default" and provenance["op_census_matches_graph"] is True
    assert provenance["input_size_range"] == (example.size_range.to_json() if example.size_range else None)
    result = CliRunner().invoke(main, ["inspect", str(example.path)])
    assert result.exit_code == 0, result.output
    assert "verification  PASSED" in result.output and "max_abs_unflipped" in result.output
    assert f"(sidecar schema {example.schema})" in result.output
    assert f"method        default ({example.sampler.value})" in result.output
    if example.size_range:
        assert f"input {example.size_range} (opt 128x128)" in result.output
    data = json.loads(CliRunner().invoke(main, ["inspect", str(example.path), "--json"]).output)
    assert data["provenance"]["sampler"] == example.sampler.value


def test_verify_passes_on_an_example(example, tmp_path):
    for suffix in (".onnx", ".json"):
        shutil.copy(example.path.with_suffix(suffix), tmp_path / f"old{suffix}")
    verification = verify_artifact(tmp_path / "old.onnx")
    assert verification.passed
    # Verified again as it was verified when made: the same batches at the same sizes.
    assert [(run.batch, run.input_size) for run in verification.runs] == list(example.runs)
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "old.onnx"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["passed"] is True
