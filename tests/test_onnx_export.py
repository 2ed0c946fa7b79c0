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
from rtdetr_export.verify.compare import Thresholds
from rtdetr_export.verify.inputs import synthetic_images
from rtdetr_export.verify.margins import FLIP_MARGIN, record_rounding_margins
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


def _reference(models, preset, method, batch):
    """PyTorch outputs on the test inputs (cached per model and batch) and each query's rounding margin."""
    key = (preset, method, "reference", batch)
    if key not in models:
        model = _model(models, preset, method)
        size = model.config.image_size
        images = synthetic_images(batch, size, seed=batch + 11)
        sizes = np.array([[size[1] + 7 * i, size[0] - 3 * i] for i in range(batch)], dtype=np.int64)
        with torch.no_grad(), record_rounding_margins(model) as recorder:
            logits, boxes = model(torch.from_numpy(images))
        margins = recorder.as_numpy() if recorder is not None else None
        models[key] = (images, sizes, logits, boxes, margins)
    return models[key]


def _run_both(models, preset, method, path, head, batch, top_k=300):
    """Our own comparison, independent of the exporter's built-in verification."""
    images, sizes, logits, boxes, margins = _reference(models, preset, method, batch)
    size = images.shape[2:]
    feed = {"images": images}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    if head == "detections":
        feed["orig_target_sizes"] = sizes
    got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
    if head == "raw":
        return {"logits": logits.numpy(), "pred_boxes": boxes.numpy()}, got, None, margins
    scores, index = torch.topk(torch.sigmoid(logits).flatten(1), top_k, dim=-1)
    c = logits.shape[-1]
    query = index // c
    cx, cy, w, h = boxes.unbind(-1)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * torch.from_numpy(
        sizes).repeat(1, 2)[:, None, :].float()
    want = {"labels": (index % c).numpy(), "scores": scores.numpy(),
            "boxes": torch.gather(xyxy, 1, query[..., None].expand(-1, -1, 4)).numpy()}
    row_margins = None if margins is None else np.take_along_axis(margins, query.numpy(), axis=1)
    return want, got, max(size) / sizes.max(1), row_margins


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


TOLERANCE = {"logits": 1e-4, "pred_boxes": 1e-4, "labels": 0, "boxes": 1e-3, "scores": 1e-5}


def _parity_errors(want, got, head, scale=None, margins=None, tolerance=TOLERANCE, input_size=None):
    """Max error per output after pairing rows; asserts the pairing and the excused flips are legitimate.

    Rows may be re-paired only where near-tied scores let a runtime swap them (< 5% of rows). With the
    discrete sampler a row may differ beyond tolerance only if the reference put one of its sampling points
    within FLIP_MARGIN cells of a rounding boundary (``margins``), for at most 1% of rows, by at most 1e-2
    (boxes normalised). Box errors are in pixels of the model's input resolution (``scale`` = input /
    original size): float32 noise in a normalised box grows with the size it is multiplied by.
    """
    if head == "detections":
        want, got = dict(want), dict(got)
        for out in (want, got):
            out["boxes"] = out["boxes"] * scale[:, None, None]
    names = ["logits", "pred_boxes"] if head == "raw" else ["labels", "boxes", "scores"]
    errors = dict.fromkeys(names, 0.0)
    for b in range(want[names[0]].shape[0]):
        rows = lambda out: np.concatenate([np.atleast_3d(out[n][b:b + 1])[0].reshape(out[n].shape[1], -1)  # noqa
                                           .astype(np.float64) for n in names], axis=1)
        order = np.arange(want[names[0]].shape[1])
        if not all(np.abs(want[n][b] - got[n][b]).max() <= tolerance[n] for n in names):
            order = _pair_rows(rows(want), rows(got))
            moved = np.abs(rows(got)[order] - rows(got)).max(-1) > 0
            assert moved.mean() < 0.05, "more than 5% of the rows moved"
        bad = np.zeros(len(order), dtype=bool)
        for n in names:
            err = np.abs(want[n][b].astype(np.float64) - got[n][b][order]).reshape(len(order), -1).max(-1)
            bad |= err > tolerance[n]
        if bad.any() and margins is not None:
            near = margins[b] < FLIP_MARGIN
            if head == "raw":
                size = np.maximum(np.abs(want["logits"][b] - got["logits"][b][order]).max(-1),
                                  np.abs(want["pred_boxes"][b] - got["pred_boxes"][b][order]).max(-1))
            else:  # boxes are in input-resolution pixels here: normalise like pred_boxes
                size = np.abs(want["boxes"][b] - got["boxes"][b][order]).max(-1) / input_size
            assert not (bad & ~near).any(), "a row differs without a sampling point near a rounding boundary"
            assert bad.mean() <= 0.01 and size[bad].max() <= 1e-2, (int(bad.sum()), float(size[bad].max()))
            keep = ~bad
        else:
            keep = np.ones(len(order), dtype=bool)
        for n in names:
            diff = np.abs(want[n][b][keep].astype(np.float64) - got[n][b][order][keep])
            errors[n] = max(errors[n], float(diff.max(initial=0.0)))
    return errors


def _assert_parity(want, got, head, scale=None, margins=None, input_size=None):
    errors = _parity_errors(want, got, head, scale, margins, input_size=input_size)
    for name, err in errors.items():
        assert err <= TOLERANCE[name], f"{name}: {err:.3g} > {TOLERANCE[name]:g}"


def _export(model, out, variant, verify=True):
    method, head, dynamic, simplify = variant
    batch = 4 if not dynamic else 1
    result = export_onnx(model, out, OnnxExportOptions(head=head, dynamic_batch=dynamic, batch=batch,
                                                       simplify=simplify, verify=verify))
    graph = onnx.load(str(out))
    onnx.checker.check_model(graph, full_check=True)
    ops = {n.op_type for n in graph.graph.node}
    assert not ops & {"Loop", "If", "NonZero"}
    if method == "discrete":
        assert "GridSample" not in ops
    else:
        assert "GridSample" in ops
    batch_dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert (batch_dim.dim_param != "") == dynamic
    return result, [1, 4] if dynamic else [batch]


@pytest.mark.parametrize("variant", VARIANTS, ids=[_ids(v) for v in VARIANTS])
def test_tiny_exports_match_pytorch_on_onnxruntime(models, variant, tmp_path):
    method, head = variant[:2]
    result, batches = _export(_model(models, "tiny", method), tmp_path / "m.onnx", variant)
    assert result.provenance["verification"]["passed"]
    for batch in batches:
        want, got, scale, margins = _run_both(models, "tiny", method, tmp_path / "m.onnx", head, batch)
        _assert_parity(want, got, head, scale, margins, input_size=320)


# Detections-head boxes of r18vd with the discrete sampler: the 1e-3 px limit is at the float32 noise floor
# between ONNX Runtime and PyTorch at 640 px (ONNX Runtime's fp32 is ~2.5x further from a float64 run than
# PyTorch's; docs/onnx-export.md). These variants must meet the product's verification threshold, and are
# reported as xfail, with the measured error, when they miss 1e-3 px.
NOISE_FLOOR_BOX_PX = Thresholds().box_px


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS, ids=[_ids(v) for v in VARIANTS])
def test_r18vd_exports_match_pytorch_on_onnxruntime(models, variant, tmp_path):
    method, head = variant[:2]
    # The exporter's own verification is covered by the tiny matrix; here the test's comparison stands alone.
    _, batches = _export(_model(models, "r18vd", method), tmp_path / "m.onnx", variant, verify=False)
    for batch in batches:
        want, got, scale, margins = _run_both(models, "r18vd", method, tmp_path / "m.onnx", head, batch)
        if (method, head) != ("discrete", "detections"):
            _assert_parity(want, got, head, scale, margins, input_size=640)
            continue
        errors = _parity_errors(want, got, head, scale, margins,
                                tolerance={**TOLERANCE, "boxes": NOISE_FLOOR_BOX_PX}, input_size=640)
        assert errors["labels"] == 0 and errors["scores"] <= TOLERANCE["scores"], errors
        assert errors["boxes"] <= NOISE_FLOOR_BOX_PX, errors
        if errors["boxes"] > TOLERANCE["boxes"]:
            pytest.xfail(f"box error {errors['boxes']:.3g} px at batch {batch} exceeds 1e-3 px (float32 noise "
                         f"floor; within the {NOISE_FLOOR_BOX_PX:g} px verification threshold)")


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
