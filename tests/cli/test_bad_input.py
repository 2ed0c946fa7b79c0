"""Bad model files are user errors: RTDetrExportError from the API, one ``error:`` line and exit != 0 from the CLI.

Every case is checked twice: ``load_model`` must raise RTDetrExportError (never a bare KeyError, IndexError...),
and ``rtdetr-export describe --model ...`` must exit non-zero with exactly one stderr line starting with
``error:`` and no traceback.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from rtdetr_export.cli import main
from rtdetr_export.errors import RTDetrExportError
from rtdetr_export.imaging import load_image
from rtdetr_export.weights import load_model
from cli_errors import assert_one_line_error
from paths import TESTS


# -- payloads that must never be unpickled -------------------------------------------------------------------------
def _leave_marker(path: str) -> None:
    Path(path).write_text("code from the checkpoint ran")


class RunsCodeOnLoad:
    """Unpickling this calls ``_leave_marker``: a stand-in for a malicious checkpoint."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (_leave_marker, (self.marker,))


class RunsCodeOnSetstate:
    """Unpickling this rebuilds the object and calls ``__setstate__``, which leaves the marker."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __setstate__(self, state):
        _leave_marker(state["marker"])


# -- the cases -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_state():
    return load_model(preset="tiny").state_dict()


@pytest.fixture(scope="module")
def r18vd_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("r18vd") / "r18vd.pth"
    torch.save({"ema": {"module": load_model(preset="r18vd").state_dict()}}, path)
    return path


def _folder_without_config(tmp_path, ctx):
    folder = tmp_path / "no_config"
    folder.mkdir()
    shutil.copy(ctx["tiny_folder"] / "model.safetensors", folder / "model.safetensors")
    return folder, {}, "config.json"


def _truncated_safetensors(tmp_path, ctx):
    folder = tmp_path / "truncated"
    folder.mkdir()
    shutil.copy(ctx["tiny_folder"] / "config.json", folder / "config.json")
    data = (ctx["tiny_folder"] / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    return folder, {}, "safetensors"


def _other_architecture(tmp_path, ctx):
    g = torch.Generator().manual_seed(0)
    state = {"conv1.weight": torch.randn(64, 3, 7, 7, generator=g), "bn1.weight": torch.ones(64),
             "bn1.bias": torch.zeros(64), "layer1.0.conv1.weight": torch.randn(64, 64, 3, 3, generator=g),
             "fc.weight": torch.randn(1000, 512, generator=g), "fc.bias": torch.zeros(1000)}
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    return path, {}, "not an RT-DETR (v1 or v2) checkpoint"


def _pickle_running_code(cls):
    def build(tmp_path, ctx):
        path = tmp_path / "payload.pth"
        torch.save({"model": cls(ctx["marker"])}, path)
        return path, {}, "refusing to unpickle"
    return build


def _r18vd_with_r50vd_preset(tmp_path, ctx):
    return ctx["r18vd_checkpoint"](), {"preset": "r50vd"}, "does not match"


def _folder_with_wrong_preset(tmp_path, ctx):
    return ctx["tiny_folder"], {"preset": "r18vd"}, "missing keys"


def _nonexistent(tmp_path, ctx):
    return tmp_path / "does_not_exist.pth", {}, "does not exist"


def _empty_file(tmp_path, ctx):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    return path, {}, "empty.pth"


def _text_file(tmp_path, ctx):
    path = tmp_path / "notes.pth"
    path.write_text("hello world, not a checkpoint\n")
    return path, {}, "notes.pth"


def _truncated_pth(tmp_path, ctx):
    path = tmp_path / "cut.pth"
    torch.save({"model": ctx["tiny_state"]}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, {}, "not a readable PyTorch checkpoint"


def _missing_key(key):
    def build(tmp_path, ctx):
        state = dict(ctx["tiny_state"])
        del state[key]
        path = tmp_path / "missing.pth"
        torch.save({"model": state}, path)
        return path, {}, key
    return build


CASES = {  # name -> (builder, marks)
    "folder-without-config-json": (_folder_without_config, []),
    "truncated-safetensors": (_truncated_safetensors, []),
    "other-architecture-state-dict": (_other_architecture, []),
    "pickle-running-code-via-reduce": (_pickle_running_code(RunsCodeOnLoad), []),
    "pickle-running-code-via-setstate": (_pickle_running_code(RunsCodeOnSetstate), []),
    "r18vd-checkpoint-with-r50vd-preset": (_r18vd_with_r50vd_preset, [pytest.mark.slow]),
    "transformers-folder-with-wrong-preset": (_folder_with_wrong_preset, []),
    "nonexistent-path": (_nonexistent, []),
    "empty-pth": (_empty_file, []),
    "text-file-pth": (_text_file, []),
    "truncated-pth": (_truncated_pth, []),
    "missing-weight-key": (_missing_key("decoder.enc_score_head.weight"), []),
    "missing-key-the-shapes-are-read-from": (_missing_key("decoder.decoder.layers.0.linear1.weight"), []),
    "missing-stem-key": (_missing_key("backbone.conv1.conv1_3.conv.weight"), []),
}
PARAMS = [pytest.param(build, marks=marks, id=name) for name, (build, marks) in CASES.items()]


@pytest.fixture
def ctx(tmp_path, hf_case, tiny_state, request):
    return {"tiny_folder": hf_case("tiny", "default").folder, "tiny_state": tiny_state,
            "marker": tmp_path / "MARKER", "r18vd_checkpoint": lambda: request.getfixturevalue("r18vd_checkpoint")}


@pytest.mark.parametrize("build", PARAMS)
def test_api_raises_rtdetr_export_error(build, ctx, tmp_path):
    path, kwargs, fragment = build(tmp_path, ctx)
    with pytest.raises(RTDetrExportError) as info:
        load_model(path, **kwargs)
    assert fragment in str(info.value)
    assert not ctx["marker"].exists(), "code inside the checkpoint ran"


@pytest.mark.parametrize("build", PARAMS)
def test_cli_describe_prints_one_error_line(build, ctx, tmp_path):
    path, kwargs, fragment = build(tmp_path, ctx)
    args = ["describe", "--model", str(path)]
    if "preset" in kwargs:
        args += ["--preset", kwargs["preset"]]
    result = CliRunner().invoke(main, args)
    assert_one_line_error(result, fragment)
    assert not ctx["marker"].exists(), "code inside the checkpoint ran"


def test_missing_key_error_lists_exactly_that_key(ctx, tmp_path):
    path, _, key = _missing_key("decoder.enc_score_head.weight")(tmp_path, ctx)
    with pytest.raises(RTDetrExportError, match=r"1 missing keys \(decoder\.enc_score_head\.weight\)"):
        load_model(path)


def test_wrong_preset_for_a_folder_lists_the_mismatched_keys(ctx):
    with pytest.raises(RTDetrExportError, match=r"missing keys \(backbone\.res_layers\.0\.blocks\.1\."):
        load_model(ctx["tiny_folder"], preset="r18vd")


@pytest.mark.slow
@pytest.mark.parametrize("case", ["truncated-safetensors", "pickle-running-code-via-reduce"])
def test_a_real_process_prints_one_error_line_and_no_traceback(case, ctx, tmp_path):
    path, _, fragment = CASES[case][0](tmp_path, ctx)
    proc = subprocess.run([sys.executable, "-m", "rtdetr_export", "describe", "--model", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr
    assert proc.stdout == ""
    assert not ctx["marker"].exists()


# -- images --------------------------------------------------------------------------------------------------------
def test_load_image_refuses_a_text_file_named_jpg(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_text("this is not a JPEG\n")
    with pytest.raises(RTDetrExportError, match="x.jpg"):
        load_image(path)


def test_load_image_refuses_a_truncated_png_and_a_missing_file(tmp_path):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(good)
    cut = tmp_path / "cut.png"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    for path in (cut, tmp_path / "missing.png"):
        with pytest.raises(RTDetrExportError):
            load_image(path)
    assert load_image(good).size == (64, 48)


# -- nothing written on failure ------------------------------------------------------------------------------------
# Every command that writes a file or folder (-o, --report) fails before making it: a run that ends in an error
# leaves no empty folder, no predictions.json and no report behind. {out} is the output path, {tmp} the test's
# folder (holding empty/, fake.jpg and notes.onnx), {val} the trained fixture's val split.
FIXTURE = TESTS / "data" / "fixture"
WRITES_NOTHING = {
    "predict-folder-without-images": (["predict", "{tmp}/empty", "--preset", "tiny", "-o", "{out}"],
                                      "contains no images"),
    "predict-only-unreadable-images": (["predict", "{tmp}/fake.jpg", "{tmp}/missing.jpg", "--preset", "tiny",
                                        "-o", "{out}"], "no image could be read"),
    "predict-bad-threshold": (["predict", "{val}/images/000001.jpg", "--preset", "tiny", "--threshold", "1.5",
                               "-o", "{out}"], "threshold"),
    "predict-triton-without-model-name": (["predict", "{val}/images/000001.jpg", "--triton", "http://127.0.0.1:9",
                                           "-o", "{out}"], "--triton-model"),
    "eval-annotations-not-json": (["eval", "--model", "{shapes}", "--coco", "{tmp}/notes.onnx", "--images",
                                   "{val}/images", "--report", "{out}"], "not JSON"),
    "eval-empty-image-folder": (["eval", "--model", "{shapes}", "--coco", "{val}/instances_val.json", "--images",
                                 "{tmp}/empty", "--report", "{out}"], "is empty"),
    "eval-batch-0": (["eval", "--model", "{shapes}", "--coco", "{val}/instances_val.json", "--images",
                      "{val}/images", "--batch", "0", "--report", "{out}"], "--batch"),
    "bench-iters-and-seconds": (["bench", "--preset", "tiny", "--iters", "2", "--seconds", "1", "--report", "{out}"],
                                "not both"),
    "bench-unknown-backend": (["bench", "--preset", "tiny", "--backends", "cuda9", "--report", "{out}"],
                              "unknown backend"),
    "bench-missing-artifact": (["bench", "{tmp}/missing.onnx", "--report", "{out}"], "no such file"),
    "bench-not-an-onnx-file": (["bench", "{tmp}/notes.onnx", "--report", "{out}"], "not an ONNX file"),
    "triton-not-an-onnx-file": (["triton", "{tmp}/notes.onnx", "-o", "{out}"], "not an ONNX file"),
    "triton-missing-artifact": (["triton", "{tmp}/missing.onnx", "-o", "{out}"], "no such file"),
    "serve-bench-no-clients": (["serve-bench", "http://127.0.0.1:9", "--model", "m", "--clients", "0",
                                "--report", "{out}"], "--clients"),
    "serve-bench-server-not-there": (["serve-bench", "http://127.0.0.1:9", "--model", "m", "--seconds", "1",
                                      "--report", "{out}"], "Connection refused"),
    "serve-bench-folder-without-images": (["serve-bench", "http://127.0.0.1:9", "--model", "m", "--images",
                                           "{tmp}/empty", "--report", "{out}"], "contains no images"),
    "onnx-opset-too-old": (["onnx", "--preset", "tiny", "--opset", "9", "-o", "{out}"], "opset"),
    # the calibration folder also supplies the verification images (its held-out part): checked before any work
    "onnx-calib-images-empty": (["onnx", "--preset", "tiny", "--precision", "int8", "--calib-images", "{tmp}/empty",
                                 "-o", "{out}"], "contains no images"),
    "onnx-calib-images-missing": (["onnx", "--preset", "tiny", "--precision", "fp16", "--calib-images",
                                   "{tmp}/missing", "-o", "{out}"], "is not a folder of images"),
    "trt-calib-images-missing": (["trt", "--preset", "tiny", "--int8", "--calib-images", "{tmp}/missing", "-o",
                                  "{tmp}/model.engine"], "is not a folder of images"),
}


@pytest.mark.parametrize("args, fragment", list(WRITES_NOTHING.values()), ids=list(WRITES_NOTHING))
def test_a_failed_command_leaves_its_output_path_absent(args, fragment, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "fake.jpg").write_text("not a JPEG\n")
    (tmp_path / "notes.onnx").write_text("not a model\n")
    out = tmp_path / ("model.onnx" if args[0] == "onnx" else "result")
    if args[0] == "serve-bench":
        pytest.importorskip("tritonclient")
    filled = [a.format(tmp=tmp_path, out=out, val=FIXTURE / "shapes_val", shapes=FIXTURE / "rtdetrv2_shapes")
              for a in args]
    result = CliRunner().invoke(main, [*filled, "--quiet"])
    assert_one_line_error(result, fragment)
    assert not out.exists()
    assert {p.name for p in tmp_path.iterdir()} == {"empty", "fake.jpg", "notes.onnx"}  # nor anything else
