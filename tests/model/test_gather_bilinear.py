"""The gather bilinear sampler: ``default`` (bilinear, zeros padding, align_corners=False) sampling written with
Gather and arithmetic instead of GridSample. Same numbers as GridSample, no GridSample in the graph, and every
stage after the export (FP16, INT8, verification) knows it."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto
import pytest
import torch
from click.testing import CliRunner
from torch.nn import functional as F

from conftest import PRESET_SIZES, DetectorOutputs, compare_detectors
from rtdetr_export.cli import main
from rtdetr_export.eval import EvalOptions, evaluate
from rtdetr_export.model.deformable_attention import bilinear_corners
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.onnx_graph import FLOAT, element_types
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
from rtdetr_export.precision import PrecisionOptions
from rtdetr_export.precision.int8 import ATTENTION_MATMUL, Int8Options, excluded_nodes
from rtdetr_export.weights import load_model
from paths import TESTS

FIXTURE = TESTS / "data" / "fixture"
PARITY_TOL = 1e-4


def gather_bilinear(value: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """value [N, C, H, W] read at loc [N, Q, P, 2] with the four corners of ``bilinear_corners`` -> [N, C, Q, P]."""
    n, c, h, w = value.shape
    index, weight = bilinear_corners(loc, h, w)  # [N, Q, P, 4]
    rows = value.reshape(n, c, h * w).gather(2, index.reshape(n, 1, -1).expand(n, c, -1))
    return (rows.reshape(n, c, *index.shape[1:]) * weight.unsqueeze(1)).sum(-1)


@pytest.mark.parametrize("h, w", [(8, 8), (5, 9), (9, 5)], ids=["square-8x8", "wide-5x9", "tall-9x5"])
def test_four_corner_reads_equal_grid_sample_bilinear_with_zeros_padding(h, w):
    g = torch.Generator().manual_seed(h * 10 + w)
    value = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    # [-0.3, 1.3]^2: points inside, on the border band (some corners outside) and far outside the map.
    loc = torch.rand(2, 50, 6, 2, generator=g, dtype=torch.float64) * 1.6 - 0.3
    loc[0, 0, :4] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-5.0, 0.5], [0.5, 1e6]], dtype=torch.float64)
    want = F.grid_sample(value, 2 * loc - 1, mode="bilinear", padding_mode="zeros", align_corners=False)
    got = gather_bilinear(value, loc)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=0, atol=1e-12)
    assert bool((got[0, :, 0, 2:4] == 0).all())  # wholly outside: zero, as zero padding reads


@pytest.fixture(scope="module")
def tiny():
    return load_model(preset="tiny")


def _export(model, path, bilinear_op=None, **options):
    """Export with the sampler a bilinear op names (None: the export default)."""
    sampler = Sampler.parse("default", bilinear_op) if bilinear_op else None
    return export_onnx(model, path, OnnxExportOptions(sampler=sampler, **options))


def _run(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits", "pred_boxes"], {"images": images})


@pytest.mark.slow
def test_tiny_gather_export_has_no_grid_sample_and_equals_the_grid_sample_export(tiny, tmp_path):
    gather = _export(tiny, tmp_path / "gather.onnx", bilinear_op="gather", dynamic_batch=True, opset=13)
    grid = _export(tiny, tmp_path / "grid.onnx", bilinear_op="gridsample", dynamic_batch=True, verify=False)
    assert "GridSample" not in gather.record.op_census and gather.record.op_census["Gather"] > 0
    assert grid.record.op_census["GridSample"] > 0
    images = torch.rand(3, 3, 320, 320, generator=torch.Generator().manual_seed(5)).numpy()
    for got, want in zip(_run(gather.path, images), _run(grid.path, images)):
        assert float(np.abs(got - want).max()) <= 1e-5
    assert gather.record.sampler is Sampler.GATHER_BILINEAR and gather.record.method == "default"
    assert gather.record.sampler.bilinear_op == "gather" and gather.record.export.opset == 13
    for record in (gather.record.to_json(), json.loads(gather.sidecar.read_text())):
        assert record["method"] == "default" and record["sampler"] == Sampler.GATHER_BILINEAR.value
        # schema 4: the top-level sampler says how bilinear reading is written; export.bilinear_op is gone
        assert record["schema_version"] == 4 and "bilinear_op" not in record["export"]
        assert record["export"]["opset"] == 13
    assert grid.record.sampler is Sampler.GRIDSAMPLE_BILINEAR
    assert grid.record.to_json()["sampler"] == "gridsample-bilinear"
    # Bilinear results are continuous in the locations: verification has no rounding flip to excuse.
    runs = gather.verification.runs
    assert gather.verification.passed and [r.batch for r in runs] == [1, 4]
    assert all(r.flipped_rows == 0 for r in runs)


def test_the_gather_sampler_needs_no_newer_opset_but_grid_sample_still_does(tiny, tmp_path):
    result = CliRunner().invoke(main, ["onnx", "--preset", "tiny", "--bilinear-op", "gridsample", "--opset", "13",
                                       "--no-verify", "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "GridSample needs opset 16" in result.output and "--bilinear-op gather" in result.output


@pytest.mark.slow
def test_fp16_keeps_corner_weights_fp32_and_cell_indices_int64(tiny, tmp_path):
    result = _export(tiny, tmp_path / "fp16.onnx", bilinear_op="gather",
                     precision=PrecisionOptions("fp16", calib_count=2))
    assert result.verification.passed
    graph = onnx.load(str(result.path))
    types = element_types(graph)
    floors = [n for n in graph.graph.node if n.op_type == "Floor"]
    assert floors and all(types[n.output[0]] == FLOAT for n in floors)
    # Corner cells are int64 from the Floor on; their weights (the fractional parts) stay FP32.
    fractions = [n for n in graph.graph.node if n.op_type == "Sub" and any(i in {f.output[0] for f in floors}
                                                                           for i in n.input)]
    assert fractions and all(types[n.output[0]] == FLOAT for n in fractions)
    gathers = [n for n in graph.graph.node if n.op_type == "Gather" and "cross_attn" in n.name]
    assert gathers and all(types[n.input[1]] == TensorProto.INT64 for n in gathers)
    recipe = result.record.recipe.details["fp32_nodes"]
    weights = recipe["bilinear corner weights and their weighted sum (gather sampler)"]
    weighted_sums = [n.name for n in graph.graph.node if n.op_type == "MatMul" and n.name in weights]
    assert weighted_sums, "the MatMul applying the corner weights must stay FP32"


@pytest.mark.slow
def test_int8_keeps_the_corner_weighted_sum_in_float(tiny, tmp_path):
    graph = _export(tiny, tmp_path / "m.onnx", bilinear_op="gather", verify=False).path
    model = onnx.load(str(graph))
    excluded = excluded_nodes(model, Int8Options())
    constants = {t.name for t in model.graph.initializer}
    cross = [n.name for n in model.graph.node if n.op_type == "MatMul" and "cross_attn" in n.name
             and not constants & set(n.input)]
    assert cross and all(excluded.get(name) == ATTENTION_MATMUL for name in cross)


def _folder_case_parity(case, tmp_path, extra):
    out = tmp_path / "gather.onnx"
    size = str(PRESET_SIZES[case.preset])
    result = CliRunner().invoke(main, ["onnx", "--model", str(case.folder), "--image-size", size,
                                       "--bilinear-op", "gather", "--dynamic-batch", "--quiet", *extra,
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    graph = onnx.load(str(out))
    assert "GridSample" not in {n.op_type for n in graph.graph.node}
    images = case.images.numpy()
    for batch in (1, 4):  # the dynamic batch at 1 and 4 (the two-image batch repeated)
        feed = np.concatenate([images] * 2)[:batch]
        logits, boxes = _run(out, feed)
        ref = DetectorOutputs(*(torch.cat([t] * 2)[:batch] for t in (case.hf.logits, case.hf.boxes,
                                                                      case.hf.topk_scores, case.hf.all_scores)))
        ours = DetectorOutputs(torch.from_numpy(logits), torch.from_numpy(boxes), ref.topk_scores, ref.all_scores)
        comparison = compare_detectors(ref, ours, PARITY_TOL)
        print(f"{case.preset} gather, batch {batch}: ONNX Runtime vs transformers {comparison.matched_max_diff:.3g}")
        assert comparison.matched_max_diff <= PARITY_TOL
    return out


@pytest.mark.slow
def test_r18vd_gather_export_matches_transformers_raw_and_detections(hf_case, tmp_path):
    case = hf_case("r18vd", "default")
    _folder_case_parity(case, tmp_path, [])
    out = tmp_path / "det.onnx"
    result = CliRunner().invoke(main, ["onnx", "--model", str(case.folder), "--image-size", "640", "--head",
                                       "detections", "--bilinear-op", "gather", "--top-k", "100", "--quiet",
                                       "--no-verify", "--batch", "2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    sizes = np.array([[640, 640], [640, 640]], dtype=np.int64)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    labels, boxes, scores = session.run(["labels", "boxes", "scores"], {"images": case.images.numpy(),
                                                                         "orig_target_sizes": sizes})
    # transformers' detections from its own outputs: top 100 of sigmoid(logits) over queries x classes.
    prob = torch.sigmoid(case.hf.logits).flatten(1)
    want_scores, index = prob.topk(100, dim=1)
    num_classes = case.hf.logits.shape[-1]
    cx, cy, w, h = case.hf.boxes.unbind(-1)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) * 640
    want_boxes = xyxy.gather(1, (index // num_classes).unsqueeze(-1).expand(-1, -1, 4))
    assert np.array_equal(labels, (index % num_classes).numpy())
    assert float(np.abs(boxes - want_boxes.numpy()).max()) <= 1e-2
    assert float(np.abs(scores - want_scores.numpy()).max()) <= 1e-4


@pytest.mark.slow
def test_r50vd_gather_export_matches_transformers(hf_case, tmp_path):
    _folder_case_parity(hf_case("r50vd", "default"), tmp_path, [])


@pytest.mark.slow
def test_the_trained_fixture_scores_the_same_ap_with_either_bilinear_op(tmp_path):
    model = load_model(FIXTURE / "rtdetrv2_shapes")
    paths = []
    for op in ("gather", "gridsample"):
        paths.append(_export(model, tmp_path / f"{op}.onnx", bilinear_op=op, dynamic_batch=True, verify=False).path)
    val = FIXTURE / "shapes_val"
    report = evaluate(paths, EvalOptions(str(val / "instances_val.json"), str(val / "images"), batch=8), model)
    _, gather, grid = report.rows
    print(f"fixture AP: gather {gather.metrics.stats['AP']:.4f}, GridSample {grid.metrics.stats['AP']:.4f}")
    assert gather.metrics.stats["AP50"] > 0.2  # real detections: the fixture is trained
    assert abs(gather.metrics.stats["AP"] - grid.metrics.stats["AP"]) <= 0.001
