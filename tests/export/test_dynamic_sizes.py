"""Dynamic-size exports: `rtdetr-export onnx --dynamic-size --min-size --opt-size --max-size` makes height and width
graph dimensions, with anchors, the valid mask and AIFI's position embedding computed in the graph from the
feature-map shapes. One file runs at every size of its range with the parity of a static export at that size; the
sidecar records the range; predict, bench and eval run it at its opt size or at one chosen within the range; the
TensorRT profile carries the range. Static exports never take this path (measured: their graphs are byte-identical
to those of the code before it, docs/model.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from conftest import DetectorOutputs, compare_detectors, hf_outputs, make_images, run_ours
from rtdetr_export.artifact import EngineRecord, IODescription, load_onnx, open_artifact, read_metadata
from rtdetr_export.backends.tensorrt.builder import BuildOptions, profile_shapes
from rtdetr_export.cli import main
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.export.torch_export import GraphOptions, export_graph, export_record
from rtdetr_export.imaging import load_image, postprocess, preprocess
from rtdetr_export.model import SizeRange
from rtdetr_export.model.aifi import sincos_position_embedding, sincos_position_embedding_in_graph
from rtdetr_export.model.sampler import Sampler
from rtdetr_export.pipeline import OnnxExportOptions, export_onnx
from rtdetr_export.pipeline.engine import engine_record, profile_size_range
from rtdetr_export.weights import load_model
from paths import TESTS
from tiers import costly

pytestmark = pytest.mark.xdist_group("dynamic_sizes")  # one worker builds the module's dynamic files

PARITY_TOL = 1e-4  # raw head, as every static FP32 export
SIZES = [(320, 320), (480, 640), (640, 640)]
RANGE = SizeRange(min=(320, 320), opt=(480, 640), max=(640, 640))
PHOTO = TESTS / "data" / "images" / "cat_chelsea.jpg"
V1 = TESTS / "data" / "schema_examples" / "micro_raw_v1.onnx"  # a fixed-size (128 px) file


@pytest.fixture(scope="module")
@costly
def dynamic(hf_case, tmp_path_factory):
    """One dynamic-size file per sampler from the tiny transformers folder, range 320x320..640x640, opt 480x640:
    gather bilinear through the CLI (dynamic batch, verified at opt, min and max), discrete and GridSample
    bilinear through the API (static batch 1, not verified: the parity test below is their proof)."""
    case = hf_case("tiny", "default")
    folder = tmp_path_factory.mktemp("dynamic")
    gather = folder / "gather.onnx"
    result = CliRunner().invoke(main, [
        "onnx", "--model", str(case.folder), "--dynamic-size", "--min-size", "320", "--opt-size", "480x640",
        "--max-size", "640", "--dynamic-batch", "--quiet", "-o", str(gather)])
    assert result.exit_code == 0, result.output
    files = {"case": case, "gather": gather}
    for method, op in (("discrete", "gather"), ("default", "gridsample")):
        model = load_model(case.folder, method=method, image_size=RANGE.opt)
        options = OnnxExportOptions(size_range=RANGE, sampler=Sampler.parse(method, op), verify=False)
        name = method if method == "discrete" else op
        files[name] = export_onnx(model, folder / f"{name}.onnx", options).path
    return files


def _ort(path: Path, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, boxes = session.run(["logits", "pred_boxes"], {"images": images.numpy()})
    return torch.from_numpy(logits), torch.from_numpy(boxes)


@pytest.mark.parametrize("sampler", ["gather", "discrete", "gridsample"])
def test_one_dynamic_file_matches_pytorch_at_three_sizes(dynamic, sampler):
    """The PyTorch reference at each size is the model built for that size (its constants precomputed)."""
    method = "discrete" if sampler == "discrete" else "default"
    model = load_model(dynamic["case"].folder, method=method, image_size=RANGE.opt)
    for height, width in SIZES:
        model.set_image_size(height, width)
        images = make_images(height, width, seed=3)
        images = images if sampler == "gather" else images[:1]  # only the gather file has a dynamic batch
        want = run_ours(model, images)
        logits, boxes = _ort(dynamic[sampler], images)
        diff = compare_detectors(want, DetectorOutputs(logits, boxes, want.topk_scores, want.all_scores),
                                 PARITY_TOL).matched_max_diff
        print(f"tiny {sampler} dynamic file at {height}x{width}: ONNX Runtime vs PyTorch {diff:.3g}")
        assert diff <= PARITY_TOL


def test_the_gather_file_matches_transformers_at_three_sizes(dynamic):
    import transformers

    reference = transformers.RTDetrV2ForObjectDetection.from_pretrained(dynamic["case"].folder).eval()
    for height, width in SIZES:
        images = make_images(height, width, seed=3)
        with torch.no_grad():
            want = hf_outputs(reference(pixel_values=images))
        logits, boxes = _ort(dynamic["gather"], images)
        diff = compare_detectors(want, DetectorOutputs(logits, boxes, want.topk_scores, want.all_scores),
                                 PARITY_TOL).matched_max_diff
        print(f"tiny gather dynamic file at {height}x{width}: ONNX Runtime vs transformers {diff:.3g}")
        assert diff <= PARITY_TOL


def test_height_and_width_are_symbolic_graph_dimensions(dynamic):
    gather = ort.InferenceSession(str(dynamic["gather"]), providers=["CPUExecutionProvider"])
    assert gather.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    # The query axis stays a number (symbolic shape inference before onnxslim): the outputs read as a static file's.
    assert [o.shape for o in gather.get_outputs()] == [["batch", 50, 80], ["batch", 50, 4]]
    discrete = ort.InferenceSession(str(dynamic["discrete"]), providers=["CPUExecutionProvider"])
    assert discrete.get_inputs()[0].shape == [1, 3, "height", "width"]
    census = open_artifact(dynamic["gather"]).op_census
    assert "GridSample" not in census and census["Range"] > 0  # anchors and embeddings come from arange(H), arange(W)


def test_the_sidecar_and_metadata_record_the_range_and_every_verified_size(dynamic):
    sidecar = json.loads(dynamic["gather"].with_suffix(".json").read_text())
    assert sidecar == read_metadata(load_onnx(dynamic["gather"]))
    # The record read back writes the same JSON (its architecture's sequences come back as tuples).
    assert json.loads(json.dumps(open_artifact(dynamic["gather"]).to_json())) == sidecar
    assert sidecar["schema_version"] == 4
    assert sidecar["sampler"] == Sampler.GATHER_BILINEAR.value and "bilinear_op" not in sidecar["export"]
    assert sidecar["input_size"] == [480, 640]
    assert sidecar["input_size_range"] == {"min": [320, 320], "opt": [480, 640], "max": [640, 640]}
    assert sidecar["export"]["dynamic_size"] is True and sidecar["export"]["dynamic_batch"] is True
    assert sidecar["io"]["inputs"][0]["shape"] == ["batch", 3, "height", "width"]
    verification = sidecar["verification"]
    assert verification["passed"]
    assert [(run["batch"], run["input_size"]) for run in verification["runs"]] == [
        (1, [480, 640]), (4, [480, 640]), (1, [320, 320]), (1, [640, 640])]
    shown = CliRunner().invoke(main, ["inspect", str(dynamic["gather"])])
    assert shown.exit_code == 0 and "input 320x320..640x640 (opt 480x640)" in shown.output, shown.output


def test_verify_later_runs_the_file_at_opt_min_and_max_again(dynamic):
    result = CliRunner().invoke(main, ["verify", str(dynamic["gather"]), "--model", str(dynamic["case"].folder),
                                       "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] and [run["input_size"] for run in report["runs"]] == [
        [480, 640], [480, 640], [320, 320], [640, 640]]


def test_a_fixed_size_sidecar_has_no_range_and_older_sidecars_still_read_as_fixed():
    fixed = export_record(GraphOptions(), "onnxslim")
    assert fixed.dynamic_size is False and fixed.to_json()["dynamic_size"] is False
    old = open_artifact(V1)  # schema 1: no input_size_range at all
    assert old.header.schema_version == 1 and old.input_size_range is None
    assert old.sampler is Sampler.GRIDSAMPLE_BILINEAR  # before gathers, default sampling was written as GridSample
    assert old.run_size() == (128, 128) and old.run_size((128, 128)) == (128, 128)
    with pytest.raises(RTDetrExportError, match="takes 128x128 images only"):
        old.run_size((256, 256), V1.name)


def test_a_dynamic_file_runs_at_its_opt_size_unless_a_size_within_its_range_is_chosen(dynamic):
    record = open_artifact(dynamic["gather"])
    assert record.run_size() == (480, 640)
    assert record.run_size((320, 640)) == (320, 640)  # each side within its own bounds
    for outside in [(256, 320), (640, 704), (704, 704)]:
        with pytest.raises(RTDetrExportError, match=r"outside gather.onnx's range 320x320..640x640 \(opt 480x640\)"):
            record.run_size(outside, "gather.onnx")


def _predict(*args):
    return CliRunner().invoke(main, ["predict", *map(str, args)])


@pytest.mark.parametrize("size", [None, (320, 320)], ids=["opt", "chosen-320x320"])
def test_predict_on_a_dynamic_file_equals_the_runtime_at_that_size(dynamic, tmp_path, size):
    args = [PHOTO, "--artifact", dynamic["gather"], "--threshold", "0.2", "-o", tmp_path, "--json", "--quiet"]
    result = _predict(*args, *(["--image-size", f"{size[0]}x{size[1]}"] if size else []))
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)["annotations"]
    image = load_image(PHOTO)
    session = ort.InferenceSession(str(dynamic["gather"]), providers=["CPUExecutionProvider"])
    logits, boxes = session.run(["logits", "pred_boxes"], {"images": preprocess(image, size or RANGE.opt)})
    want = postprocess(logits, boxes, [(image.height, image.width)], 0.2)[0]
    assert [a["category_id"] for a in got] == want.labels.tolist()
    assert np.allclose([a["score"] for a in got], want.scores, atol=1e-6)


def _one_line_error(result, fragment: str) -> None:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines


def test_predict_bench_and_eval_refuse_a_size_outside_the_range_in_one_line(dynamic, tmp_path):
    gather, folder = dynamic["gather"], dynamic["case"].folder
    outside = "gather.onnx's range 320x320..640x640 (opt 480x640)"
    _one_line_error(_predict(PHOTO, "--artifact", gather, "--image-size", "800", "-o", tmp_path / "p"), outside)
    _one_line_error(CliRunner().invoke(main, ["bench", str(gather), "--model", str(folder), "--image-size", "704x640",
                                              "--backends", "onnxruntime", "--quiet"]), outside)
    _one_line_error(CliRunner().invoke(main, ["eval", str(gather), "--coco", str(tmp_path / "none.json"), "--images",
                                              str(tmp_path), "--image-size", "256", "--quiet"]), outside)
    shutil.copy(V1, tmp_path / "fixed.onnx")
    shutil.copy(V1.with_suffix(".json"), tmp_path / "fixed.json")
    _one_line_error(_predict(PHOTO, "--artifact", tmp_path / "fixed.onnx", "--image-size", "256", "-o", tmp_path / "q"),
                    "fixed.onnx takes 128x128 images only")


def test_bench_runs_a_dynamic_file_at_the_chosen_size(dynamic, tmp_path):
    result = CliRunner().invoke(main, [
        "bench", str(dynamic["gather"]), "--model", str(dynamic["case"].folder), "--image-size", "320",
        "--backends", "onnxruntime", "--iters", "1", "--warmup", "0", "--e2e-iters", "0", "--threads", "1",
        "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"]["input_size"] == [320, 320]
    rows = [r for r in report["results"] if r["status"] == "ok"]
    assert rows and all(r["parity"]["passed"] for r in rows)


def test_a_triton_config_gives_a_dynamic_file_variable_height_and_width(dynamic, tmp_path):
    pytest.importorskip("tritonclient")
    from rtdetr_export.serving.config import parse_config

    result = CliRunner().invoke(main, ["triton", str(dynamic["gather"]), "-o", str(tmp_path / "repo"), "--quiet"])
    assert result.exit_code == 0, result.output
    config = parse_config((tmp_path / "repo" / "gather" / "config.pbtxt").read_text())
    assert [(e.name, list(e.dims)) for e in config.input] == [("images", [3, -1, -1])]
    assert [list(e.dims) for e in config.output] == [[50, 80], [50, 4]]


@pytest.mark.parametrize("args, message", [
    (["--dynamic-size", "--min-size", "640", "--max-size", "320"], "min 640x640 exceeds max 320x320 in height"),
    (["--dynamic-size", "--min-size", "320x640", "--max-size", "640x320"], "min 320x640 exceeds max 640x320 in width"),
    (["--dynamic-size", "--min-size", "320", "--opt-size", "800", "--max-size", "640"],
     "opt 800x800 is outside min 320x320 .. max 640x640"),
    (["--dynamic-size", "--min-size", "320"], "needs --min-size and --max-size"),
    (["--dynamic-size", "--max-size", "640"], "needs --min-size and --max-size"),
    (["--min-size", "320", "--max-size", "640"], "add --dynamic-size"),
    (["--dynamic-size", "--min-size", "320", "--opt-size", "480", "--image-size", "640", "--max-size", "640"],
     "give one"),
], ids=["min-above-max", "min-above-max-width", "opt-outside", "no-max", "no-min", "no-flag", "opt-and-image-size"])
def test_a_bad_size_range_is_one_line_before_the_model_loads(args, message, tmp_path):
    result = CliRunner().invoke(main, ["onnx", "--preset", "tiny", *args, "-o", str(tmp_path / "m.onnx")])
    _one_line_error(result, message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag, value, message", [("--min-size", "330", "multiples of 32"),
                                                  ("--max-size", "640x650", "multiples of 32"),
                                                  ("--min-size", "32x640", "at least 64")])
def test_range_ends_follow_the_image_size_rules(flag, value, message, tmp_path):
    result = CliRunner().invoke(main, ["onnx", "--preset", "tiny", "--dynamic-size", "--min-size", "320",
                                       "--max-size", "640", flag, value, "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_a_range_whose_min_has_fewer_cells_than_queries_is_refused():
    """Query selection takes the top num_queries encoder cells: at 64x64 there are 8*8 + 4*4 + 2*2 = 84."""
    model = load_model(preset="tiny", num_queries=100, image_size=(320, 320))
    options = GraphOptions(size_range=SizeRange((64, 64), (320, 320), (640, 640)))
    with pytest.raises(RTDetrExportError, match="input 64x64 has 84 encoder cells, fewer than the model's 100 queries"):
        export_graph(model, options)


def test_size_range_rules():
    assert RANGE.contains((320, 640)) and not RANGE.contains((640, 704)) and not RANGE.contains((288, 320))
    assert str(RANGE) == "320x320..640x640 (opt 480x640)"
    assert SizeRange.from_json(RANGE.to_json()) == RANGE
    for low, opt, high, message in [((640, 640), (640, 640), (320, 320), "min 640x640 exceeds max 320x320"),
                                    ((320, 320), (800, 800), (640, 640), "opt 800x800 is outside"),
                                    ((320, 330), (320, 352), (640, 640), "multiples of 32")]:
        with pytest.raises(RTDetrExportError, match=message) as caught:
            SizeRange(low, opt, high)
        assert "\n" not in str(caught.value)


def test_the_in_graph_constants_equal_the_precomputed_ones():
    """What a dynamic-size graph computes from the map shapes equals the static constants: the anchors exactly,
    the float32 position embedding within 1e-5 of the float64 table (largest map of the test range and 1280)."""
    for height, width in [(10, 20), (20, 20), (40, 40)]:
        table = sincos_position_embedding(height, width, 256, 10000.0)
        in_graph = sincos_position_embedding_in_graph(height, width, 256, 10000.0)
        assert in_graph.shape == table.shape and float((in_graph - table).abs().max()) <= 1e-5
    model = load_model(preset="tiny", image_size=(480, 640))
    images = torch.rand(1, 3, 480, 640, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(images)
        model.compute_sizes_in_graph()
        got = model(images)
    assert all(float((g - w).abs().max()) <= 1e-5 for g, w in zip(got, want))


# -- TensorRT optimisation profile (pure shape logic; building an engine needs TensorRT and a GPU) -------------------
def _io(*inputs: dict) -> IODescription:
    return IODescription.from_json({"inputs": list(inputs), "outputs": []}, "test io")


DYNAMIC_IO = _io({"name": "images", "shape": ["batch", 3, "height", "width"], "dtype": "float32"},
                 {"name": "orig_target_sizes", "shape": ["batch", 2], "dtype": "int64"})


def test_the_profile_carries_min_opt_max_height_width_and_batch():
    shapes = profile_shapes(DYNAMIC_IO, BuildOptions(min_batch=1, opt_batch=2, max_batch=4, size_range=RANGE))
    assert shapes["images"] == {"min": [1, 3, 320, 320], "opt": [2, 3, 480, 640], "max": [4, 3, 640, 640]}
    assert shapes["orig_target_sizes"] == {"min": [1, 2], "opt": [2, 2], "max": [4, 2]}
    static_batch = _io({"name": "images", "shape": [1, 3, "height", "width"], "dtype": "float32"})
    assert profile_shapes(static_batch, BuildOptions(size_range=RANGE))["images"]["max"] == [1, 3, 640, 640]


def test_the_profile_refuses_sizes_it_cannot_map():
    with pytest.raises(RTDetrExportError, match="dynamic height and width: give the profile's sizes"):
        profile_shapes(DYNAMIC_IO, BuildOptions())
    fixed = _io({"name": "images", "shape": ["batch", 3, 640, 640], "dtype": "float32"})
    with pytest.raises(RTDetrExportError, match="fixed size 640x640"):
        profile_shapes(fixed, BuildOptions(size_range=RANGE))
    channels = _io({"name": "images", "shape": ["batch", "c", "height", "width"], "dtype": "float32"})
    with pytest.raises(RTDetrExportError, match="other than the batch, height and width"):
        profile_shapes(channels, BuildOptions(size_range=RANGE))


def test_trt_takes_the_files_range_or_a_narrower_one_within_it():
    assert profile_size_range(RANGE, (None, None, None), "m.onnx") == RANGE
    narrower = profile_size_range(RANGE, ((320, 320), (320, 320), None), "m.onnx")
    assert narrower == SizeRange((320, 320), (320, 320), (640, 640))
    with pytest.raises(RTDetrExportError, match=r"outside m.onnx's range 320x320..640x640"):
        profile_size_range(RANGE, (None, None, (800, 800)), "m.onnx")
    with pytest.raises(RTDetrExportError, match="m.onnx is a fixed-size export"):
        profile_size_range(None, ((320, 320), None, None), "m.onnx")


def test_trt_refuses_profile_sizes_a_file_cannot_take_before_any_build(dynamic, tmp_path):
    shutil.copy(V1, tmp_path / "fixed.onnx")
    shutil.copy(V1.with_suffix(".json"), tmp_path / "fixed.json")
    engine = str(tmp_path / "m.engine")
    for args, message in [(["--onnx", str(tmp_path / "fixed.onnx"), "--min-size", "128"], "is a fixed-size export"),
                          (["--onnx", str(dynamic["gather"]), "--max-size", "800"],
                           "gather.onnx's range 320x320..640x640 (opt 480x640)"),
                          (["--onnx", str(dynamic["gather"]), "--dynamic-size"], "the file's own range"),
                          (["--preset", "tiny", "--min-size", "320"], "add --dynamic-size")]:
        _one_line_error(CliRunner().invoke(main, ["trt", *args, "-o", engine]), message)
    assert not list(tmp_path.glob("m.*"))


def test_an_engine_sidecar_records_its_profile_range_as_its_own(dynamic, tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"stand-in: only its checksum is recorded")
    onnx = open_artifact(dynamic["gather"])
    assert onnx.input_size == (480, 640) and onnx.input_size_range == RANGE
    narrower = SizeRange((320, 320), (320, 320), (480, 640))
    latency = {"batch": 1, "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "mean_ms": 1.0, "images_per_s": 1000.0}
    record = engine_record(onnx_file, onnx, BuildOptions(size_range=narrower), trt_version="10.13.0", gpu={},
                           profile={}, io_tensors=[], verification=None, latency=latency, build_seconds=0.0)
    assert record.input_size == (320, 320) and record.input_size_range == narrower
    data = record.to_json()
    assert data["input_size"] == [320, 320] and data["input_size_range"] == narrower.to_json()
    json.dumps(data)  # the build options (with the range) serialise
    assert EngineRecord.from_json(json.loads(json.dumps(data))).input_size_range == narrower
    assert record.run_size((480, 640)) == (480, 640)
