"""`rtdetr-export onnx`: every variant exports, passes the checker, and matches PyTorch on ONNX Runtime."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from rtdetr_export.cli import main
from rtdetr_export.export import OnnxExportOptions, export_onnx
from rtdetr_export.export.provenance import read_metadata
from rtdetr_export.verify.inputs import synthetic_images
from rtdetr_export.weights import load_model

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


def _run_both(model, path, head, batch, top_k=300):
    """Our own comparison, independent of the exporter's built-in verification."""
    size = model.config.image_size
    images = synthetic_images(batch, size, seed=batch + 11)
    feed = {"images": images}
    sizes = np.array([[size[1] + 7 * i, size[0] - 3 * i] for i in range(batch)], dtype=np.int64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if head == "detections":
        feed["orig_target_sizes"] = sizes
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    with torch.no_grad():
        logits, boxes = model(torch.from_numpy(images))
    if head == "raw":
        return {"logits": logits.numpy(), "pred_boxes": boxes.numpy()}, got, None
    scores, index = torch.topk(torch.sigmoid(logits).flatten(1), top_k, dim=-1)
    c = logits.shape[-1]
    query = index // c
    cx, cy, w, h = boxes.unbind(-1)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * torch.from_numpy(
        sizes).repeat(1, 2)[:, None, :].float()
    want = {"labels": (index % c).numpy(), "scores": scores.numpy(),
            "boxes": torch.gather(xyxy, 1, query[..., None].expand(-1, -1, 4)).numpy()}
    return want, got, max(size) / sizes.max(1)


def _pair_rows(want_rows, got_rows):
    """One-to-one pairing of want's rows with got's, closest pairs first (identical rows pair in any order)."""
    dist = np.abs(want_rows[:, None, :] - got_rows[None, :, :]).max(-1)
    order = np.full(len(want_rows), -1)
    used = set()
    for flat in np.argsort(dist, axis=None, kind="stable"):
        i, j = divmod(int(flat), dist.shape[1])
        if order[i] < 0 and j not in used:
            order[i] = j
            used.add(j)
    return order


def _assert_parity(want, got, head, scale=None, method="default"):
    """Equal within tolerance; rows may be re-paired only where near-tied scores let a runtime swap them.

    Box errors are measured in pixels of the model's input resolution (``scale`` = input / original size):
    float32 noise in a normalised box grows with the size it is multiplied by.
    """
    if head == "detections":
        want, got = dict(want), dict(got)
        for out in (want, got):
            out["boxes"] = out["boxes"] * scale[:, None, None]
    names = ["logits", "pred_boxes"] if head == "raw" else ["labels", "boxes", "scores"]
    tolerance = {"logits": 1e-4, "pred_boxes": 1e-4, "labels": 0, "boxes": 1e-3, "scores": 1e-5}
    for b in range(want[names[0]].shape[0]):
        rows = lambda out: np.concatenate([np.atleast_3d(out[n][b:b + 1])[0].reshape(out[n].shape[1], -1)  # noqa
                                           .astype(np.float64) for n in names], axis=1)
        order = np.arange(want[names[0]].shape[1])
        if not all(np.abs(want[n][b] - got[n][b]).max() <= tolerance[n] for n in names):
            order = _pair_rows(rows(want), rows(got))
            moved = np.abs(rows(got)[order] - rows(got)).max(-1) > 0
            assert moved.mean() < 0.05, "more than 5% of the rows moved"
        keep = np.ones(len(order), dtype=bool)
        if method == "discrete" and head == "raw":
            # A location on a rounding boundary can land in the neighbouring cell under 1e-7 float noise:
            # allow at most 1% of rows to differ, and by no more than 1e-2 (docs/verification.md).
            err = np.abs(rows(want) - rows(got)[order]).max(-1)
            keep = err <= 1e-4
            assert (~keep).mean() <= 0.01 and err.max() <= 1e-2, (int((~keep).sum()), float(err.max()))
        for n in names:
            assert np.abs(want[n][b][keep] - got[n][b][order][keep]).max() <= tolerance[n], n


def _check_export(models, preset, variant, tmp_path):
    method, head, dynamic, simplify = variant
    model = _model(models, preset, method)
    batch = 4 if not dynamic else 1
    out = tmp_path / f"{_ids(variant)}.onnx"
    result = export_onnx(model, out, OnnxExportOptions(head=head, dynamic_batch=dynamic, batch=batch,
                                                       simplify=simplify))
    graph = onnx.load(str(out))
    onnx.checker.check_model(graph, full_check=True)
    ops = {n.op_type for n in graph.graph.node}
    assert not ops & {"Loop", "If", "NonZero"}
    if method == "discrete":
        assert "GridSample" not in ops
    else:
        assert "GridSample" in ops
    assert result.provenance["verification"]["passed"]
    for run_batch in ([1, 4] if dynamic else [batch]):
        want, got, scale = _run_both(model, out, head, run_batch)
        _assert_parity(want, got, head, scale, method)
    batch_dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert (batch_dim.dim_param != "") == dynamic


@pytest.mark.parametrize("variant", VARIANTS, ids=[_ids(v) for v in VARIANTS])
def test_tiny_exports_match_pytorch_on_onnxruntime(models, variant, tmp_path):
    _check_export(models, "tiny", variant, tmp_path)


R18_KNOWN_GAP = pytest.mark.xfail(
    reason="open: r18vd discrete + detections head measures 1.2-1.3e-3 px box error (input-resolution px) "
           "against the 1e-3 px limit on random weights; not yet resolved, see the ONNX export issue",
    strict=False)
R18_VARIANTS = [pytest.param(v, id=_ids(v), marks=[R18_KNOWN_GAP] if v[:2] == ("discrete", "detections") else [])
                for v in VARIANTS]


@pytest.mark.slow
@pytest.mark.parametrize("variant", R18_VARIANTS)
def test_r18vd_exports_match_pytorch_on_onnxruntime(models, variant, tmp_path):
    _check_export(models, "r18vd", variant, tmp_path)


def test_sidecar_and_metadata_carry_the_provenance(models, tmp_path):
    model = _model(models, "tiny", "discrete")
    out = tmp_path / "m.onnx"
    export_onnx(model, out, OnnxExportOptions(dynamic_batch=True))
    sidecar = json.loads(out.with_suffix(".json").read_text())
    meta = read_metadata(onnx.load(str(out)))
    for record in (sidecar, meta):
        assert record["format"] == "rtdetr-export/onnx"
        assert record["method"] == "discrete"
        assert record["input_size"] == [320, 320]
        assert len(record["classes"]) == 80 and record["classes"][0] == "person"
        assert record["export"]["opset"] == 17 and record["export"]["dynamic_batch"] is True
        assert record["precision"] == "fp32"
        assert {"torch", "onnx", "onnxruntime"} <= set(record["libraries"])
        assert record["verification"]["passed"] is True
        assert [run["batch"] for run in record["verification"]["runs"]] == [1, 4]
    assert sidecar["model"]["source"] == {"format": "random", "file": None, "sha256": None, "seed": 0}


def test_anchors_in_the_graph_are_finite(models, tmp_path):
    out = tmp_path / "m.onnx"
    export_onnx(_model(models, "tiny", "default"), out, OnnxExportOptions(simplify=False, verify=False))
    from rtdetr_export.export.graph_checks import non_finite_initializers

    assert non_finite_initializers(onnx.load(str(out))) == []


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
    (["--preset", "tiny", "--opset", "15"], "GridSample"),
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
        result = CliRunner().invoke(main, ["onnx", "--preset", "tiny", "-o", str(locked / "m.onnx")])
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user that can write to read-only folders (root)")
        assert result.exit_code != 0 and "not writable" in result.output
    finally:
        locked.chmod(0o700)
    result = CliRunner().invoke(main, ["onnx", "--preset", "tiny", "-o", str(tmp_path / "missing" / "m.onnx")])
    assert result.exit_code != 0 and "does not exist" in result.output


def test_failed_verification_leaves_no_file(models, tmp_path, monkeypatch):
    import rtdetr_export.verify as verification

    def broken(*args, **kwargs):
        return {"passed": False, "failures": ["logits at batch 1: max abs diff 0.5 > 0.0001"]}

    monkeypatch.setattr(verification, "verify_onnx", broken)
    out = tmp_path / "m.onnx"
    with pytest.raises(Exception, match="logits at batch 1"):
        export_onnx(_model(models, "tiny", "discrete"), out, OnnxExportOptions())
    assert list(tmp_path.iterdir()) == []


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
    readme = (Path(__file__).parents[1] / "README.md").read_text()
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
