"""`rtdetr-export select` on the micro model: the run, the written choice and its record, the refusal when nothing
meets the budget, OpenVINO (and NNCF) skipped where it is missing, an OpenVINO IR written under -o's stem when it
wins, and one-line errors for bad input with nothing written.

The candidates here take the session's micro files (tests/micro.py) through ``copy_recipe`` instead of exporting
(the exports are the slow tier's business: tests/select/test_select_fixture.py), and run on ONNX Runtime only, with
two timed rounds: what is under test is the run's bookkeeping, not any speed.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rtdetr_export.artifact import read_sidecar, sidecar_path
from rtdetr_export.cli import main
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.select import (Candidate, Runtime, SelectOptions, copy_recipe, select_artifact, select_markdown,
                                  write_select_report)
from rtdetr_export.select.candidates import CPU_CANDIDATES, NNCF_INT8, OPENVINO_NATIVE
from micro import MICRO, micro_model
from paths import DATA

VAL = DATA / "fixture" / "shapes_val"
CLASSES = [f"class_{i}" for i in range(MICRO["num_classes"])]


def tiny_coco(folder: Path, count: int = 3) -> tuple[Path, Path]:
    """``count`` of the fixture's val images with their boxes, the shapes' categories folded onto the micro model's
    four class names (random weights score ~0 AP on them anyway: the numbers are not under test)."""
    data = json.loads((VAL / "instances_val.json").read_text())
    images = data["images"][:count]
    ids = {image["id"] for image in images}
    fold = {c["id"]: i % len(CLASSES) + 1 for i, c in enumerate(data["categories"])}
    annotations = [{**a, "category_id": fold[a["category_id"]]} for a in data["annotations"] if a["image_id"] in ids]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    for image in images:
        shutil.copy(VAL / "images" / image["file_name"], folder / "images")
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]}))
    return path, folder / "images"


MICRO_FILES: list[Path] = []  # the micro FP32 and INT8 files the candidates copy (set by chosen_run)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return tiny_coco(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="module")
def model():
    return micro_model()


def _candidates(micro_fp32, micro_int8, openvino: bool = False) -> tuple[Candidate, ...]:
    fp32 = copy_recipe("fp32", "the micro FP32 file", micro_fp32)
    int8 = copy_recipe("int8", "the micro INT8 file (TensorRT layout, not verified)", micro_int8)
    ort = Runtime("onnxruntime")
    out = (Candidate("ort-fp32", fp32, ort), Candidate("ort-int8", int8, ort))
    # The NNCF candidate is the real one (its recipe converts and quantizes): with openvino missing it is never made.
    return out + ((Candidate("ov-f32:fp32", fp32, Runtime("openvino", "f32")), Candidate("ov-nncf", NNCF_INT8,
                                                                                            OPENVINO_NATIVE))
                  if openvino else ())


def _options(coco, candidates, **overrides) -> SelectOptions:
    # No pause between the candidates' calls (settle_ms 0): the run's bookkeeping is under test, not the timing.
    return SelectOptions(str(coco[0]), str(coco[1]), **{"batch": 2, "iters": 2, "warmup": 0, "threads": 1,
                                                        "settle_ms": 0.0, "candidates": candidates, **overrides})


@pytest.fixture(scope="module")
def chosen_run(micro_fp32, micro_int8, model, coco, tmp_path_factory):
    """One run of four candidates, the last two on OpenVINO, with openvino made unimportable: what every test below
    reads, so the fast tier pays for one run."""
    out = tmp_path_factory.mktemp("chosen")
    MICRO_FILES[:] = [micro_fp32, micro_int8]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
        candidates = _candidates(micro_fp32, micro_int8, openvino=True)
        report = select_artifact(model, _options(coco, candidates), out / "best.onnx")
    return report, out


def test_every_candidate_is_timed_at_both_batches_and_scored(chosen_run):
    report, _ = chosen_run
    assert [r.name for r in report.rows] == ["ort-fp32", "ort-int8", "ov-f32:fp32", "ov-nncf"]
    for row in report.rows[:2]:
        assert row.status == "ok", row.reason
        assert set(row.latency_ms) == {1, 2} and all(len(row.samples_ms[b]) == 2 for b in (1, 2))
        assert row.throughput_ips[2] == pytest.approx(2000 / row.latency_ms[2]["mean"])
        assert 0.0 <= row.ap <= 1.0
    baseline = report.rows[0]
    assert baseline.ap_delta == 0.0 and report.baseline == "ort-fp32"
    assert [r.size_bytes for r in report.rows[:2]] == [MICRO_FILES[0].stat().st_size, MICRO_FILES[1].stat().st_size]
    assert baseline.verified == "pass (fp32)" and baseline.parity.passed  # its record's verification, then here
    assert report.rows[1].verified == "not verified"  # the micro INT8 file was made with --no-verify
    assert report.settings["settle_ms"] == 0.0  # as asked, and said in the report


def test_the_chosen_row_is_the_fastest_trusted_one_within_the_budget(chosen_run):
    report, _ = chosen_run
    chosen = report.row(report.chosen)
    assert chosen.within_budget and chosen.trusted and chosen.on_front
    faster = [r for r in report.rows if r.measured and r.p50(1) < chosen.p50(1)]
    assert all(not r.within_budget for r in faster)


def test_the_chosen_file_is_a_copy_and_its_sidecar_records_the_selection(chosen_run):
    report, out = chosen_run
    written = out / "best.onnx"
    assert report.written == str(written)
    source = MICRO_FILES[[r.name for r in report.rows].index(report.chosen)]
    assert written.read_bytes() == source.read_bytes()
    record = read_sidecar(sidecar_path(written))
    selection = record.selection
    assert selection.chosen == report.chosen and selection.max_ap_drop == 0.005
    assert selection.baseline == "ort-fp32" and selection.batches == (1, 2) and selection.images == 3
    assert [c.name for c in selection.candidates] == ["ort-fp32", "ort-int8", "ov-f32:fp32", "ov-nncf"]
    assert [c.status for c in selection.candidates[2:]] == ["skipped", "skipped"]
    assert [c.p50_ms for c in selection.candidates] == [r.p50(1) for r in report.rows]
    # the export's own record, kept (the FP32 file's verification passed; the micro INT8 file has none)
    assert record.verification == read_sidecar(sidecar_path(source)).verification


def test_the_report_folder_has_bench_s_four_kinds_of_file(chosen_run, tmp_path):
    report, _ = chosen_run
    written = write_select_report(report, tmp_path / "report")
    assert {p.name for p in written} == {"report.json", "report.md", "report.csv", "latency_vs_ap.png"}
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["chosen"] == report.chosen and data["pareto_front"] == report.front
    assert "(chosen)" in (tmp_path / "report" / "report.md").read_text()
    with pytest.raises(RTDetrExportError, match="already holds a report"):
        write_select_report(report, tmp_path / "report")


def test_a_budget_nothing_meets_writes_nothing_and_names_the_closest(micro_fp32, micro_int8, model, coco, tmp_path):
    options = _options(coco, _candidates(micro_fp32, micro_int8), max_ap_drop=-0.5, batch=1, iters=1, limit=1)
    report = select_artifact(model, options, tmp_path / "best.onnx")
    assert report.chosen is None and report.closest is not None
    assert list(tmp_path.iterdir()) == []
    assert report.refusal.startswith("no candidate meets --max-ap-drop -0.5: the closest, ")
    assert "\n" not in report.refusal and "would need --max-ap-drop" in report.refusal


def test_openvino_candidates_are_skipped_without_openvino(chosen_run):
    report, _ = chosen_run
    for name in ("ov-f32:fp32", "ov-nncf"):
        skipped = report.row(name)
        assert skipped.status == "skipped" and skipped.reason == "openvino is not installed (pip install openvino)"
        assert skipped.latency_ms == {} and skipped.ap is None and not skipped.on_front
    markdown = select_markdown(report)
    assert "| ov-f32:fp32 | fp32 | openvino f32 | skipped: openvino is not installed" in markdown
    # its hint is decided on the CPU that runs it; without openvino there is none to ask
    assert "| ov-nncf | nncf_int8 | openvino bf16 | skipped: openvino is not installed" in markdown


def test_the_nncf_candidate_is_skipped_with_its_reason_where_nncf_is_missing(monkeypatch):
    pytest.importorskip("openvino")
    candidate = next(c for c in CPU_CANDIDATES if c.name == "ov-nncf")
    monkeypatch.setitem(sys.modules, "nncf", None)  # `import nncf` now raises ImportError
    assert candidate.unavailable() == "nncf is not installed (pip install nncf)"
    assert next(c for c in CPU_CANDIDATES if c.name == "ov-f32:fp32").unavailable() is None


@pytest.mark.parametrize("capabilities, hint", [(["FP32", "INT8"], "f32"), (["FP32", "BF16", "INT8"], "bf16")])
def test_the_nncf_candidate_runs_bf16_only_where_the_cpu_has_it_and_says_so(monkeypatch, capabilities, hint):
    import rtdetr_export.select.candidates as candidates

    monkeypatch.setattr(candidates, "_openvino_capabilities", lambda: capabilities)
    runtime = OPENVINO_NATIVE.resolved()
    assert (runtime.backend, runtime.hint, runtime.native_bf16_only) == ("openvino", hint, False)
    if hint == "f32":
        assert runtime.note().startswith("this CPU has no BF16 (OpenVINO's CPU capabilities: FP32, INT8): runs "
                                         "(and was verified) under the f32 hint")
    else:
        assert runtime.note() is None and runtime.label == "openvino bf16"


def test_when_an_openvino_ir_wins_o_names_its_stem_and_the_ir_is_written_whole(micro_fp32, micro_ir, model, coco,
                                                                                 tmp_path, monkeypatch):
    import rtdetr_export.select.run as run
    from rtdetr_export.artifact import OpenVinoRecord, open_artifact
    from rtdetr_export.select.pareto import Choice

    # Which of two files is faster on a shared machine is not under test: the choice is made the IR's.
    monkeypatch.setattr(run, "choose", lambda points, baseline_ap, max_ap_drop: Choice("ov-ir"))
    candidates = (Candidate("ort-fp32", copy_recipe("fp32", "the micro FP32 file", micro_fp32), Runtime("onnxruntime")),
                  Candidate("ov-ir", copy_recipe("ir", "the micro FP32 IR", micro_ir), Runtime("openvino", "f32")))
    report = select_artifact(model, _options(coco, candidates, batch=1, iters=1, limit=1), tmp_path / "best.onnx")
    assert report.row("ov-ir").size_bytes == micro_ir.stat().st_size + micro_ir.with_suffix(".bin").stat().st_size
    assert report.written == str(tmp_path / "best.xml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.bin", "best.xml", "best.xml.json"]
    assert (tmp_path / "best.xml").read_bytes() == micro_ir.read_bytes()
    assert (tmp_path / "best.bin").read_bytes() == micro_ir.with_suffix(".bin").read_bytes()
    record = open_artifact(tmp_path / "best.xml")  # checks the .xml and .bin against the sidecar's sha256
    assert isinstance(record, OpenVinoRecord) and (record.ir.xml, record.ir.bin) == ("best.xml", "best.bin")
    assert record.selection.chosen == "ov-ir" and record.selection.runtime == "openvino"
    assert record.selection.precision_hint == "f32" and record.verification == open_artifact(micro_ir).verification


def _select(*args):
    return CliRunner().invoke(main, ["select", "--preset", "tiny", *map(str, args)])


@pytest.mark.parametrize("case, message", [
    ("missing", "no such annotation file"),
    ("empty", "not JSON"),
    ("no-images", "none of the annotated images is in"),
    ("exists", "already exists; pass --force"),
    ("exists-ir", "already exists; pass --force"),  # best.xml: where the NNCF IR would go if it won
    ("suffix", "output file name must end in .onnx or .xml"),
    ("budget", "--max-ap-drop is an AP difference"),
    ("settle", "--settle-ms must be >= 0"),
])
def test_bad_input_is_one_line_and_writes_nothing(coco, tmp_path, case, message):
    annotations, images, extra, output = coco[0], coco[1], [], tmp_path / "best.onnx"
    if case == "missing":
        annotations = tmp_path / "nowhere.json"
    elif case == "empty":
        annotations = tmp_path / "empty.json"
        annotations.write_text("")
    elif case == "no-images":
        images = tmp_path / "other"
        images.mkdir()
        (images / "unrelated.jpg").write_bytes((VAL / "images" / "000001.jpg").read_bytes())
    elif case == "exists":
        (tmp_path / "best.onnx").write_bytes(b"keep me")
    elif case == "exists-ir":
        (tmp_path / "best.xml").write_bytes(b"keep me")
    elif case == "suffix":
        output = tmp_path / "best.onnx.txt"
    elif case == "settle":
        extra = ["--settle-ms", "-5"]
    else:
        extra = ["--max-ap-drop", "2"]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = _select("--coco", annotations, "--images", images, "-o", output, "--report", tmp_path / "report",
                     *extra)
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_the_command_refuses_in_one_line_and_exits_1_when_nothing_is_chosen(chosen_run, coco, tmp_path, monkeypatch):
    import dataclasses

    import rtdetr_export.select as select_package

    report, _ = chosen_run
    refused = dataclasses.replace(report, chosen=None, closest="ort-fp32", shortfall=0.01, written=None)
    monkeypatch.setattr(select_package, "select_artifact", lambda *args, **kwargs: refused)
    result = _select("--image-size", "128", "--coco", coco[0], "--images", coco[1], "-o", tmp_path / "best.onnx",
                     "--quiet")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines() == [f"error: {refused.refusal}"]
    assert not (tmp_path / "best.onnx").exists()


@pytest.mark.slow  # one NNCF run on the micro model (~15 s on the 2-core machine)
def test_the_nncf_recipe_makes_an_int8_ir_of_the_fp32_file_and_runs_it_under_this_cpu_s_hint(micro_fp32, model, coco):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from rtdetr_export.artifact import OpenVinoRecord, open_artifact
    from rtdetr_export.files import file_sha256
    from rtdetr_export.pipeline.openvino import cpu_facts
    from rtdetr_export.select import measure_latency, openvino_int8_recipe
    import tempfile

    fp32 = copy_recipe("fp32", "the micro FP32 file", micro_fp32)
    # random weights' INT8 detections mean nothing: the IR is not verified (the fixture run verifies it)
    nncf = openvino_int8_recipe("nncf_int8", "NNCF INT8 IR of the micro file", fp32, verify=False)
    candidates = (Candidate("ort-fp32", fp32, Runtime("onnxruntime")), Candidate("ov-nncf", nncf, OPENVINO_NATIVE))
    options = _options(coco, candidates, batch=1, iters=1, calib_images=str(coco[1]), calib_count=2)
    with tempfile.TemporaryDirectory() as folder:
        rows = measure_latency(model, options, sorted(Path(coco[1]).iterdir()), Path(folder))
        row = rows[1]
        assert row.status == "ok", row.reason
        record = open_artifact(row.path)
        assert isinstance(record, OpenVinoRecord) and record.precision == "int8"
        assert record.nncf.recipe == "rtdetr" and record.nncf.kept_float  # the heads stayed float
        # made from the FP32 recipe's file of the same run (a byte copy of the micro file), not made again
        assert (record.onnx.file, record.onnx.sha256) == ("fp32.onnx", file_sha256(micro_fp32))
        xml = Path(row.path)
        assert row.size_bytes == xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    native = cpu_facts()[1]
    assert row.hint == ("bf16" if native else "f32") == record.runtime.inference_precision_hint
    assert (row.note == "") == native and 1 in row.latency_ms
