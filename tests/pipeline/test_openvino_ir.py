"""An OpenVINO IR is an artifact like the others: written from one of our ONNX files with its sidecar, opened by
``open_artifact`` as an ``OpenVinoRecord``, run by ``artifact_runner`` on OpenVINO, verified, inspected, predicted
with and benchmarked; a broken or partial copy is a one-line error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("openvino", reason="OpenVINO IR tests need openvino (pip install openvino)")

from rtdetr_export.artifact import (OnnxRecord, OpenVinoRecord, make_feed, open_artifact, record_from_json,
                                    sidecar_path)
from rtdetr_export.backends import OnnxRuntimeRunner, artifact_runner
from rtdetr_export.cli import main
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.files import file_sha256
from rtdetr_export.imaging.inputs import synthetic_images
from rtdetr_export.pipeline import verify_artifact
from rtdetr_export.verify import compare_agreement, thresholds_for


def cpu_has_bf16() -> bool:
    """What /proc/cpuinfo says, independently of OpenVINO: AVX-512 BF16 or AMX BF16."""
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    return "avx512_bf16" in flags or "amx_bf16" in flags


def test_an_ir_opens_as_its_record_with_the_contract_of_its_onnx_file(micro_ir, micro_fp32):
    record, source = open_artifact(micro_ir), open_artifact(micro_fp32)
    assert isinstance(record, OpenVinoRecord) and isinstance(source, OnnxRecord)
    assert sidecar_path(micro_ir).name == "micro.xml.json"
    assert (record.io, record.head, record.sampler, record.classes) == (source.io, source.head, source.sampler,
                                                                          source.classes)
    assert record.onnx.sha256 == file_sha256(micro_fp32) and record.onnx.verification_passed is True
    assert record.ir.xml_sha256 == file_sha256(micro_ir)
    assert record.ir.bin_sha256 == file_sha256(micro_ir.with_suffix(".bin"))
    assert record.runtime.weights == "fp16" and record.runtime.inference_precision_hint == "f32"
    assert record.runtime.cpu_bf16 == cpu_has_bf16()
    assert record.precision == "fp32" and record.nncf is None
    assert record.verification.passed and record.verification.candidate == "openvino-ir-cpu-f32"
    # fp16-stored weights move the logits by ~1e-3 (measured), so FP16's agreement limits judged it
    assert all(run.kind == "agreement" for run in record.verification.runs)


def test_the_sidecar_reads_back_as_the_record_it_was_written_from(micro_ir):
    data = json.loads(sidecar_path(micro_ir).read_text())
    assert data["format"] == "rtdetr-export/openvino-ir"
    again = record_from_json(data, "sidecar")
    assert isinstance(again, OpenVinoRecord) and json.loads(json.dumps(again.to_json())) == data


@pytest.mark.slow  # compiles the IR and runs it (and the reference): seconds on 2 cores
def test_the_ir_detects_what_its_onnx_file_detects(micro_ir, micro_fp32):
    feed = make_feed("raw", synthetic_images(1, (128, 128), seed=5), [(128, 128)])
    with OnnxRuntimeRunner(micro_fp32) as onnx, artifact_runner(micro_ir, open_artifact(micro_ir)) as ir:
        want, got = onnx.infer(feed), ir.infer(feed)
    assert ir.name == "openvino-f32"
    # FP16-stored weights move logits by ~1e-3, enough to swap near-tied queries' rows: judged as verification
    # judges it, by detection agreement under FP16's limits
    assert compare_agreement(want, got, "raw", thresholds_for("fp16")).passed


@pytest.mark.slow  # compiles the IR and runs it (and the reference): seconds on 2 cores
def test_verify_judges_the_ir_again_on_openvino(micro_ir):
    report = verify_artifact(micro_ir)
    assert report.passed and report.candidate == "openvino-ir-cpu-f32" and report.batches == [1, 4]


def test_inspect_describes_the_ir_from_its_record(micro_ir):
    result = CliRunner().invoke(main, ["inspect", str(micro_ir)])
    assert result.exit_code == 0, result.output
    assert "OpenVINO IR" in result.output and "weights stored fp16" in result.output
    assert "PASSED" in result.output and "edited after export" not in result.output
    described = json.loads(CliRunner().invoke(main, ["inspect", str(micro_ir), "--json"]).output)
    assert described["provenance"]["op_census_matches_graph"] and described["runtime"]["weights"] == "fp16"


@pytest.mark.slow  # compiles the IR and runs it (and the reference): seconds on 2 cores
def test_a_detector_and_bench_take_the_ir(micro_ir):
    from rtdetr_export.bench.artifacts import check_artifact
    from rtdetr_export.pipeline import open_detector
    from PIL import Image

    image = Image.fromarray((synthetic_images(1, (96, 160), seed=2)[0].transpose(1, 2, 0) * 255).astype(np.uint8))
    with open_detector(micro_ir) as detector:
        found = detector.detect(image, threshold=0.0)
    assert detector.runner.name == "openvino-f32" and len(found.scores) > 0
    artifact = check_artifact(micro_ir)
    assert artifact.kind == "openvino-ir" and artifact.batches is None and artifact.precision == "fp32"


def _copy(micro_ir: Path, folder: Path, *suffixes: str) -> Path:
    for suffix in suffixes:
        shutil.copy(str(micro_ir)[:-len(".xml")] + suffix, folder / f"micro{suffix}")
    return folder / "micro.xml"


def _one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_an_ir_without_its_bin_is_a_one_line_error(micro_ir, tmp_path):
    copy = _copy(micro_ir, tmp_path, ".xml", ".xml.json")
    assert "micro.bin are not beside it" in _one_line_error(["verify", str(copy)])


def test_an_ir_without_its_sidecar_is_a_one_line_error(micro_ir, tmp_path):
    copy = _copy(micro_ir, tmp_path, ".xml", ".bin")
    assert "no readable sidecar micro.xml.json" in _one_line_error(["inspect", str(copy)])


def test_an_ir_whose_weights_were_replaced_is_refused(micro_ir, tmp_path):
    copy = _copy(micro_ir, tmp_path, ".xml", ".bin", ".xml.json")
    data = bytearray(copy.with_suffix(".bin").read_bytes())
    data[100] ^= 1
    copy.with_suffix(".bin").write_bytes(bytes(data))
    with pytest.raises(RTDetrExportError, match="sha256 differs"):
        open_artifact(copy)


def test_the_export_never_overwrites_without_force(micro_fp32, micro_ir, tmp_path):
    copy = _copy(micro_ir, tmp_path, ".xml")  # only the .xml: the .bin and sidecar must not appear
    error = _one_line_error(["openvino", str(micro_fp32), "-o", str(copy)])
    assert "already exists; pass --force" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["micro.xml"]


@pytest.mark.parametrize("args, message", [
    (["--calib-images", "."], "apply to --precision int8 only"),
    (["--nncf-recipe", "default"], "apply to --precision int8 only"),
    (["--precision", "int8", "--calib-count", "0"], "--calib-count must be at least 1"),
])
def test_contradictory_flags_are_refused_before_any_work(micro_fp32, tmp_path, args, message):
    assert message in _one_line_error(["openvino", str(micro_fp32), "-o", str(tmp_path / "m.xml"), *args])
    assert list(tmp_path.iterdir()) == []


def test_only_an_onnx_file_of_ours_converts(micro_ir, tmp_path):
    error = _one_line_error(["openvino", str(micro_ir), "-o", str(tmp_path / "again.xml")])
    assert "is not a single ONNX file of ours" in error
    assert list(tmp_path.iterdir()) == []


def test_triton_refuses_an_ir_in_one_line(micro_ir, micro_fp32, tmp_path):
    error = _one_line_error(["triton", str(micro_ir), "-o", str(tmp_path / "repo")])
    assert "is an OpenVINO IR" in error and micro_fp32.name in error
    assert list(tmp_path.iterdir()) == []
