"""RT-DETR v1 loads, exports and verifies like v2, from transformers ``rt_detr`` folders and from checkpoints of
the original ``rtdetr_pytorch`` code, and computes what transformers' own ``RTDetrForObjectDetection`` computes
(the v1 oracle of conftest.py: seeded, perturbed random weights).

v1 is v2 with 4 sampling points on every level and only the bilinear sampler. Its original checkpoints index two
``nn.Sequential`` children that v2 names: the encoder's input projections (``encoder.input_proj.<i>.0/1``, v2
``conv``/``norm``) and the encoder-output head (``decoder.enc_output.0/1``, v2 ``proj``/``norm``).
"""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from conftest import PRESET_SIZES, DetectorOutputs, compare_detectors, run_ours
from rtdetr_export.cli import main
from rtdetr_export.model import RTDETRv2, fuse_repvgg, preset
from rtdetr_export.weights import load_model
from rtdetr_export.weights.original import infer_config, normalise_v1_names

pytest.importorskip("transformers")

PARITY_TOL = 1e-4  # two implementations in float32, as in test_transformers_parity.py
SAME_WEIGHTS_TOL = 1e-5  # our code on the same weights, as in test_original_checkpoint.py
# What tensor shapes cannot tell about the tiny test architecture; the released sizes get it from their preset.
TINY_UNSEEN = dict(image_size=320, encoder_heads=4, decoder_heads=4, num_queries=50)

V1_NAMES = [(re.compile(r"^(encoder\.input_proj\.\d+\.)(conv|norm)\."), {"conv": "0", "norm": "1"}),
            (re.compile(r"^(decoder\.enc_output\.)(proj|norm)\."), {"proj": "0", "norm": "1"})]


def to_v1_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our (= rtdetrv2_pytorch's) state dict under the key names rtdetr_pytorch (v1) saves."""
    out = {}
    for key, value in state.items():
        for pattern, index in V1_NAMES:
            key = pattern.sub(lambda m, index=index: f"{m[1]}{index[m[2]]}.", key)
        out[key] = value
    return out


def _architecture(config) -> dict:
    return {**config.to_dict(), "decoder_in_channels": config.resolved_decoder_in_channels}


def _without_buffers(keys) -> set[str]:
    return {re.sub(r"\.(weight|bias|running_mean|running_var|num_batches_tracked)$", "", k) for k in keys}


def test_a_v1_folder_with_transformers_default_two_labels_loads_as_v1_and_matches_transformers(hf_v1_case):
    case = hf_v1_case("tiny", num_labels=None)
    assert "id2label" not in json.loads((case.folder / "config.json").read_text())

    model = load_model(case.folder, image_size=320)
    assert (model.config.version, model.config.model_name) == ("v1", "RT-DETRv1")
    assert model.config.num_classes == 2 and model.config.class_names == ["class_0", "class_1"]
    assert model.config.decoder_n_points == (4, 4, 4) and model.config.decoder_method == "default"
    result = compare_detectors(case.hf, run_ours(model, case.images), PARITY_TOL)
    print(f"tiny v1 (2 labels): PyTorch vs transformers max diff {result.matched_max_diff:.3g}")
    assert result.matched_max_diff <= PARITY_TOL

    described = CliRunner().invoke(main, ["describe", "--model", str(case.folder), "--json"])
    assert described.exit_code == 0, described.output
    assert json.loads(described.stdout)["model"] == "RT-DETRv1"


@pytest.mark.parametrize("preset_name", ["r18vd", "r34vd", "r50vd_m", "r50vd", "r101vd"])
def test_every_released_v1_size_is_recognised_from_the_shapes_of_its_original_checkpoint(preset_name):
    """The released v1 configs (rtdetr_pytorch/configs/rtdetr/*_6x_coco.yml) have the v2 presets' fields."""
    with torch.device("meta"):  # shapes are all that is read; no weights are made
        model = RTDETRv2(preset(preset_name, version="v1"))
    state, version = normalise_v1_names(to_v1_layout(model.state_dict()))
    assert version == "v1"
    assert _architecture(infer_config(state, version=version)) == _architecture(preset(preset_name, version="v1"))


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "repvgg-fused"])
def test_the_same_weights_in_the_original_v1_layout_load_as_v1_and_compute_the_same(fused, hf_v1_case, tmp_path):
    case = hf_v1_case("tiny", num_labels=None)
    folder_model = load_model(case.folder, image_size=320)
    reference = copy.deepcopy(folder_model)
    if fused:
        fuse_repvgg(reference)
    ours_names = reference.state_dict()
    state = to_v1_layout(ours_names)
    assert _without_buffers(set(state) - set(ours_names)) == {
        "encoder.input_proj.0.0", "encoder.input_proj.0.1", "encoder.input_proj.1.0", "encoder.input_proj.1.1",
        "encoder.input_proj.2.0", "encoder.input_proj.2.1", "decoder.enc_output.0", "decoder.enc_output.1"}
    path = tmp_path / "rtdetr_tiny.pth"
    torch.save({"ema": {"module": state}, "last_epoch": 71}, path)

    loaded = load_model(path, **TINY_UNSEEN)
    assert loaded.source.format == "original" and loaded.config.version == "v1"
    assert loaded.config.num_classes == 2
    result = compare_detectors(run_ours(folder_model, case.images), run_ours(loaded, case.images), SAME_WEIGHTS_TOL)
    print(f"v1 original layout ({'fused' if fused else 'unfused'}): max diff {result.matched_max_diff:.3g}")
    assert not result.used_fallback and result.ordered_max_diff <= SAME_WEIGHTS_TOL


@pytest.mark.slow
def test_v1_exports_with_the_discrete_sampler_without_grid_sample_and_is_told_its_outputs_change(
        hf_v1_case, tmp_path):
    case = hf_v1_case("tiny", num_labels=None)
    out = tmp_path / "v1_discrete.onnx"
    result = CliRunner().invoke(main, ["onnx", "--model", str(case.folder), "--image-size", "320",
                                       "--method", "discrete", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "RT-DETRv1 was trained with bilinear sampling; --method discrete changes its outputs" in result.stderr

    assert "GridSample" not in {node.op_type for node in onnx.load(str(out)).graph.node}
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["method"] == "discrete" and sidecar["model"]["config"]["version"] == "v1"
    assert sidecar["verification"]["passed"]  # proven against the discrete PyTorch reference, as for v2
    inspected = CliRunner().invoke(main, ["inspect", str(out)])
    assert "RT-DETRv1" in inspected.stdout

    # The note is true: the discrete sampler is not what v1 computes.
    default = load_model(case.folder, image_size=320)
    discrete = load_model(case.folder, image_size=320, method="discrete")
    with torch.no_grad():
        moved = max(float((a - b).abs().max()) for a, b in zip(default(case.images), discrete(case.images)))
    print(f"tiny v1: discrete vs bilinear outputs differ by up to {moved:.3g}")
    assert moved > PARITY_TOL


@pytest.mark.slow
@pytest.mark.parametrize("preset_name", ["r18vd", "r50vd"])
def test_a_released_size_v1_exports_to_onnx_that_matches_transformers_and_loads_from_the_original_layout(
        preset_name, hf_v1_case, tmp_path):
    case = hf_v1_case(preset_name)
    size = PRESET_SIZES[preset_name]
    out = tmp_path / "v1.onnx"
    result = CliRunner().invoke(main, ["onnx", "--model", str(case.folder), "--image-size", str(size),
                                       "--dynamic-batch", "--quiet", "-o", str(out)])
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits, boxes = session.run(["logits", "pred_boxes"], {"images": case.images.numpy()})
    assert np.isfinite(logits).all() and logits.shape == (2, 300, 80)
    onnx_outputs = DetectorOutputs(torch.from_numpy(logits), torch.from_numpy(boxes), case.hf.topk_scores,
                                   case.hf.all_scores)
    parity = compare_detectors(case.hf, onnx_outputs, PARITY_TOL)
    print(f"{preset_name} v1: ONNX Runtime vs transformers max diff {parity.matched_max_diff:.3g}")
    assert parity.matched_max_diff <= PARITY_TOL
    assert json.loads(out.with_suffix(".json").read_text())["model"]["config"]["version"] == "v1"

    folder_model = load_model(case.folder, image_size=size)
    want = run_ours(folder_model, case.images)
    path = tmp_path / f"rtdetr_{preset_name}.pth"
    torch.save({"ema": {"module": to_v1_layout(folder_model.state_dict())}}, path)
    loaded = load_model(path, image_size=size)  # no preset: the architecture is read off the shapes
    assert loaded.config.version == "v1"
    assert _architecture(loaded.config) == _architecture(preset(preset_name, version="v1", image_size=size))
    same = compare_detectors(want, run_ours(loaded, case.images), SAME_WEIGHTS_TOL)
    print(f"{preset_name} v1 original layout: max diff {same.ordered_max_diff:.3g}")
    assert not same.used_fallback and same.ordered_max_diff <= SAME_WEIGHTS_TOL
