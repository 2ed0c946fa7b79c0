"""`rtdetr-export onnx`: every variant exports, passes the checker, and matches PyTorch on ONNX Runtime."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from rtdetr_export.cli import main
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
from rtdetr_export.artifact import read_metadata
from rtdetr_export.imaging.inputs import synthetic_images
from rtdetr_export.weights import load_model

import onnx_parity
from onnx_parity import TOLERANCE
from paths import ROOT

VARIANTS = list(itertools.product(["default", "discrete"], ["raw", "detections"], [False, True], [True, False]))


def _ids(variant):
    method, head, dynamic, simplify = variant
    return f"{method}-{head}-{'dynamic' if dynamic else 'static'}-{'slim' if simplify else 'raw-graph'}"


@pytest.fixture(scope="module")
def models():
    return {}


def _model(models, preset, method):
    key = (preset, method)
    if key not in models:
        models[key] = load_model(preset=preset, method=method)
    return models[key]


def _inputs(model, batch):
    size = model.config.image_size
    images = synthetic_images(batch, size, seed=batch + 11)
    sizes = np.array([[size[1] + 7 * i, size[0] - 3 * i] for i in range(batch)], dtype=np.int64)
    return images, sizes


def _parity(models, preset, method, path, head, batch, top_k=300):
    """Max errors of ONNX Runtime vs PyTorch reading the same queries and cells (tests/onnx_parity.py)."""
    model = _model(models, preset, method)
    images, sizes = _inputs(model, batch)
    feed = {"images": images, **({"orig_target_sizes": sizes} if head == "detections" else {})}
    run = onnx_parity.run_onnx(path, feed)
    key = (preset, method, batch, hashlib.sha256(run.key()).hexdigest())
    if key not in models:  # variants that read the same cells share one reference run
        models[key] = onnx_parity.reference(model, images, run)
    logits, boxes, flipped = models[key]
    if head == "raw":
        want = {"logits": logits.numpy(), "pred_boxes": boxes.numpy()}
        return onnx_parity.parity_errors(want, run.outputs, ["logits", "pred_boxes"]), flipped
    scale = max(images.shape[2:]) / sizes.max(1)
    want = onnx_parity.in_input_pixels(onnx_parity.detections(logits, boxes, sizes, top_k), scale)
    got = onnx_parity.in_input_pixels(run.outputs, scale)
    return onnx_parity.parity_errors(want, got, ["labels", "boxes", "scores"]), flipped


def _assert_parity(models, preset, method, path, head, batch):
    errors, _ = _parity(models, preset, method, path, head, batch)
    for name, err in errors.items():
        assert err <= TOLERANCE[name], f"{name} at batch {batch}: {err:.3g} > {TOLERANCE[name]:g}"


def _export(model, out, variant, verify=True):
    method, head, dynamic, simplify = variant
    batch = 4 if not dynamic else 1
    result = export_onnx(model, out, OnnxExportOptions(head=head, dynamic_batch=dynamic, batch=batch,
                                                       simplify=simplify, verify=verify))
    graph = onnx.load(str(out))
    onnx.checker.check_model(graph, full_check=True)
    ops = {n.op_type for n in graph.graph.node}
    assert not ops & {"Loop", "If", "NonZero"}
    assert "GridSample" not in ops  # default is written with gathers unless --bilinear-op gridsample
    batch_dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert (batch_dim.dim_param != "") == dynamic
    return result, [1, 4] if dynamic else [batch]


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS, ids=[_ids(v) for v in VARIANTS])
def test_tiny_exports_match_pytorch_on_onnxruntime(models, variant, tmp_path):
    method, head = variant[:2]
    result, batches = _export(_model(models, "tiny", method), tmp_path / "m.onnx", variant)
    assert result.record.verification.passed and result.record.to_json()["verification"]["passed"]
    for batch in batches:
        _assert_parity(models, "tiny", method, tmp_path / "m.onnx", head, batch)


# At real size, what the tiny matrix cannot show: float32 numerics of each method x head once, the dynamic batch
# once (at 1 and 4). Simplified vs raw graphs and static vs dynamic batches compute the same ops; the tiny matrix
# proves every combination of those.
R18VD_VARIANTS = [("default", "raw", False, True), ("default", "detections", False, True),
                  ("discrete", "raw", True, True), ("discrete", "detections", False, True)]


@pytest.mark.slow
@pytest.mark.parametrize("variant", R18VD_VARIANTS, ids=[_ids(v) for v in R18VD_VARIANTS])
def test_r18vd_exports_match_pytorch_on_onnxruntime(models, variant, tmp_path):
    method, head = variant[:2]
    # The exporter's own verification is covered by the tiny matrix; here the test's comparison stands alone.
    _, batches = _export(_model(models, "r18vd", method), tmp_path / "m.onnx", variant, verify=False)
    for batch in batches:
        _assert_parity(models, "r18vd", method, tmp_path / "m.onnx", head, batch)


@pytest.mark.slow
def test_sidecar_and_metadata_carry_the_provenance(models, tmp_path):
    model = _model(models, "tiny", "discrete")
    out = tmp_path / "m.onnx"
    export_onnx(model, out, OnnxExportOptions(dynamic_batch=True))
    sidecar = json.loads(out.with_suffix(".json").read_text())
    meta = read_metadata(onnx.load(str(out)))
    for record in (sidecar, meta):
        assert record["format"] == "rtdetr-export/onnx"
        assert record["method"] == "discrete" and record["sampler"] == "gather-nearest"
        assert record["schema_version"] == 4 and "bilinear_op" not in record["export"]
        assert record["input_size"] == [320, 320]
        assert len(record["classes"]) == 80 and record["classes"][0] == "person"
        assert record["export"]["opset"] == 17 and record["export"]["dynamic_batch"] is True
        assert record["precision"] == "fp32"
        assert {"torch", "onnx", "onnxruntime"} <= set(record["libraries"])
        assert record["verification"]["passed"] is True
        assert [run["batch"] for run in record["verification"]["runs"]] == [1, 4]
    assert sidecar["model"]["source"] == {"format": "random", "file": None, "sha256": None, "seed": 0}


@pytest.mark.slow
def test_anchors_in_the_graph_are_finite(models, tmp_path):
    out = tmp_path / "m.onnx"
    export_onnx(_model(models, "tiny", "default"), out, OnnxExportOptions(simplify=False, verify=False))
    from rtdetr_export.export.graph_checks import non_finite_initializers

    assert non_finite_initializers(onnx.load(str(out))) == []


def _output_dims(model: onnx.ModelProto) -> dict[str, list]:
    return {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output}


def test_an_unsimplified_graph_declares_the_static_axes_of_its_outputs_as_a_simplified_one_does(micro_fp32,
                                                                                                 micro_fp16):
    """The tracer names every size it reads ("Addlogits_dim_1"); ONNX's shape inference computes them, so a
    --no-simplify file (micro_fp16 is one: tests/micro.py) states its query and class axes as a simplified one
    (micro_fp32) does, and Triton configs, which need them, take it (tests/serving/test_triton_split.py's
    unsimplified splits)."""
    from rtdetr_export.artifact import open_artifact

    assert open_artifact(micro_fp16).export.simplifier is None and open_artifact(micro_fp32).export.simplifier
    assert _output_dims(onnx.load(str(micro_fp16))) == _output_dims(onnx.load(str(micro_fp32))) == {
        "logits": ["batch", 30, 4], "pred_boxes": ["batch", 30, 4]}


@pytest.mark.slow
def test_existing_output_needs_force_and_is_left_untouched(models, tmp_path):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"user data")
    result = CliRunner().invoke(main, ["onnx", "--preset", "tiny", "-o", str(out)])
    assert result.exit_code != 0
    assert "--force" in result.output and "Traceback" not in result.output
    assert out.read_bytes() == b"user data"
    result = CliRunner().invoke(main, ["onnx", "--preset", "tiny", "--force", "--quiet", "-o", str(out)])
    assert result.exit_code == 0, result.output
    onnx.checker.check_model(onnx.load(str(out)))


@pytest.mark.parametrize("args, message", [
    (["--preset", "nope"], "nope"),
    (["--preset", "tiny", "--bilinear-op", "gridsample", "--opset", "15"], "GridSample"),
    (["--preset", "tiny", "--image-size", "650"], "multiples of 32"),
    (["--preset", "tiny", "--image-size", "480x650"], "multiples of 32"),
    (["--preset", "tiny", "--image-size", "32x640"], "at least 64"),
    (["--preset", "tiny", "--image-size", "640y480"], "HxW"),
    (["--preset", "tiny", "--batch", "0"], "batch"),
])
def test_bad_options_give_one_line_errors(args, message, tmp_path):
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(main, ["onnx", *args, "-o", str(out)])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_folder_is_refused_before_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        # Root ignores permission bits; /proc refuses new files to everyone, so it stands in for that case.
        target = Path("/proc") if os.geteuid() == 0 and Path("/proc/self").exists() else locked
        result = CliRunner().invoke(main, ["onnx", "--preset", "tiny", "-o", str(target / "m.onnx")])
        assert result.exit_code != 0 and "not writable" in result.output, result.output
        assert "Traceback" not in result.output and not (target / "m.onnx").exists()
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)
    result = CliRunner().invoke(main, ["onnx", "--preset", "tiny", "-o", str(tmp_path / "missing" / "m.onnx")])
    assert result.exit_code != 0 and "does not exist" in result.output


@pytest.mark.slow
def test_failed_verification_leaves_no_file(models, tmp_path, monkeypatch):
    import rtdetr_export.pipeline.onnx as pipeline
    from rtdetr_export.verify import BatchComparison, Verification

    def broken(*args, **kwargs):
        return Verification("raw", [BatchComparison(1, failures=["logits at batch 1: max abs diff 0.5 > 0.0001"])], {})

    monkeypatch.setattr(pipeline, "verify_onnx", broken)
    out = tmp_path / "m.onnx"
    with pytest.raises(Exception, match="logits at batch 1"):
        export_onnx(_model(models, "tiny", "discrete"), out, OnnxExportOptions())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_verify_command_rebuilds_the_reference_and_passes(tmp_path):
    out = tmp_path / "m.onnx"
    assert CliRunner().invoke(main, ["onnx", "--preset", "tiny", "--method", "discrete", "--dynamic-batch",
                                     "--quiet", "-o", str(out)]).exit_code == 0
    result = CliRunner().invoke(main, ["verify", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["passed"] and [r["batch"] for r in report["runs"]] == [1, 4]


@pytest.mark.parametrize("content", [b"not an onnx file at all", b""])
def test_verify_rejects_files_that_are_not_our_onnx(tmp_path, content):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(content)
    result = CliRunner().invoke(main, ["verify", str(bad)])
    assert result.exit_code != 0 and "error:" in result.output and "Traceback" not in result.output
    foreign = tmp_path / "foreign.onnx"
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", 1, [1])],
                                   [onnx.helper.make_tensor_value_info("y", 1, [1])])
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    result = CliRunner().invoke(main, ["verify", str(foreign)])
    assert result.exit_code != 0 and "not exported by rtdetr-export" in result.output


@pytest.mark.slow
def test_readme_main_job_command_runs_in_under_a_minute(tmp_path):
    readme = (ROOT / "README.md").read_text()
    command = "rtdetr-export onnx --method discrete -o rtdetrv2_r18vd_discrete.onnx"
    assert command in readme
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "rtdetr_export", *command.split()[1:]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert "seeded random weights" in done.stderr
    assert (tmp_path / "rtdetrv2_r18vd_discrete.onnx").is_file()
    assert (tmp_path / "rtdetrv2_r18vd_discrete.json").is_file()
    assert elapsed < 60, f"main job took {elapsed:.1f}s"
