"""Checkpoints in the original lyuwenyu/RT-DETR layout load without a preset and compute the same thing.

Our state_dict uses the original key names, so the weights of a model loaded from a transformers folder, saved as
``{'ema': {'module': state_dict}}``, are an original-layout checkpoint of the same network. Loading it back must
infer the architecture from tensor shapes and reproduce the folder model's outputs (tolerance 1e-5; both sides
run our code on the same weights, so the measured difference is 0). The input size is not architecture: where a
test runs the loaded model it is given the test images' size (r50vd's are 320, conftest.PRESET_SIZES); what a
checkpoint without anchors is read as (640) and the size its anchors reveal have tests of their own below.
"""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import compare_detectors, run_ours
from rtdetr_export.model import fuse_repvgg, preset
from rtdetr_export.model.ccfm import RepVggBlock
from rtdetr_export.model.query_selection import INVALID_ANCHOR_LOGIT, generate_anchors
from rtdetr_export.weights import load_model
from rtdetr_export.weights.original import infer_config

pytest.importorskip("transformers")

SAME_WEIGHTS_TOL = 1e-5
# What a preset fixes besides the weights' shapes is not architecture: the input size, the sampler, class names.
NOT_ARCHITECTURE = {"image_size", "decoder_method", "id2label", "decoder_in_channels"}

PRESETS_UNDER_TEST = [pytest.param("r18vd", marks=pytest.mark.slow), pytest.param("r50vd", marks=pytest.mark.slow)]


def architecture(config) -> dict:
    fields = {k: v for k, v in config.to_dict().items() if k not in NOT_ARCHITECTURE}
    fields["decoder_in_channels"] = tuple(config.resolved_decoder_in_channels)
    fields["eval_layer"] = config.eval_layer
    return fields


@pytest.fixture(scope="module")
def folder_model(hf_case, ours_from_folder):
    """``folder_model(preset)``: (our model from the transformers folder, its outputs, the input images)."""
    def get(preset_name: str):
        case = hf_case(preset_name, "default")
        model, outputs = ours_from_folder(case)
        return model, outputs, case.images
    return get


def save(obj, path):
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("preset_name", PRESETS_UNDER_TEST)
@pytest.mark.parametrize("layout", ["ema", "model"])
def test_original_layout_loads_without_a_preset_and_matches_the_transformers_folder(
        preset_name, layout, folder_model, tmp_path):
    reference, want, images = folder_model(preset_name)
    state = reference.state_dict()
    wrapped = {"ema": {"module": state}, "epoch": 71} if layout == "ema" else {"model": state, "optimizer": {}}
    loaded = load_model(save(wrapped, tmp_path / "ckpt.pth"), image_size=images.shape[-1])

    assert loaded.source.format == "original"
    assert architecture(loaded.config) == architecture(preset(preset_name))
    assert architecture(loaded.config) == architecture(reference.config)
    got = run_ours(loaded, images)
    result = compare_detectors(want, got, SAME_WEIGHTS_TOL)
    print(f"{preset_name}/{layout}: max diff {result.matched_max_diff:.3g}")
    assert not result.used_fallback


@pytest.mark.slow
def test_r50vd_is_recognised_as_r50vd_not_r50vd_m(folder_model, tmp_path):
    reference, _, _ = folder_model("r50vd")
    loaded = load_model(save({"ema": {"module": reference.state_dict()}}, tmp_path / "r50vd.pth"))
    assert loaded.config.hidden_expansion == 1.0
    assert loaded.config.decoder_layers == 6
    assert loaded.config.eval_layer == 5  # r50vd_m would output from layer 2


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["bare", "module-prefixed"])
def test_a_bare_or_data_parallel_state_dict_loads_too(layout, folder_model, tmp_path):
    reference, want, images = folder_model("r18vd")
    state = reference.state_dict()
    if layout == "module-prefixed":
        state = {"module." + k: v for k, v in state.items()}
    loaded = load_model(save(state, tmp_path / "ckpt.pth"))
    assert compare_detectors(want, run_ours(loaded, images), SAME_WEIGHTS_TOL).ordered_max_diff <= SAME_WEIGHTS_TOL


@pytest.mark.slow
def test_inferred_config_of_an_r18vd_checkpoint_equals_the_r18vd_preset(folder_model, tmp_path):
    reference, _, _ = folder_model("r18vd")
    inferred = infer_config(reference.state_dict())
    assert architecture(inferred) == architecture(preset("r18vd"))
    assert inferred.image_size == (640, 640)
    assert inferred.backbone_block == "basic" and inferred.backbone_blocks == (2, 2, 2, 2)


@pytest.mark.slow
def test_the_derived_buffers_of_a_real_original_checkpoint_are_accepted(folder_model, tmp_path):
    """Original checkpoints also carry anchors (with +inf for invalid cells), valid_mask, num_points_scale and
    num_batches_tracked; they are derived from the config, ignored, and the anchors reveal the deploy size."""
    reference, want, images = folder_model("r18vd")
    state = dict(reference.state_dict())
    logits, valid = generate_anchors([(80, 80), (40, 40), (20, 20)])
    state["decoder.anchors"] = torch.where(logits == INVALID_ANCHOR_LOGIT, torch.tensor(float("inf")), logits)
    state["decoder.valid_mask"] = valid
    for i in range(3):
        state[f"decoder.decoder.layers.{i}.cross_attn.num_points_scale"] = torch.full((12,), 0.25)
    for key in [k for k in state if k.endswith("running_var")]:
        state[key[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(1000)
    loaded = load_model(save({"ema": {"module": state}}, tmp_path / "ckpt.pth"))
    assert loaded.config.image_size == (640, 640)
    assert loaded.config.decoder_n_points == (4, 4, 4)
    assert torch.isfinite(loaded.decoder.anchors).all()
    assert compare_detectors(want, run_ours(loaded, images), SAME_WEIGHTS_TOL).ordered_max_diff <= SAME_WEIGHTS_TOL


@pytest.mark.slow
def test_the_deploy_size_is_read_from_the_anchors_buffer(folder_model, tmp_path):
    reference, _, _ = folder_model("r18vd")
    state = dict(reference.state_dict())
    state["decoder.anchors"], state["decoder.valid_mask"] = generate_anchors([(64, 64), (32, 32), (16, 16)])
    loaded = load_model(save({"ema": {"module": state}}, tmp_path / "ckpt.pth"))
    assert loaded.config.image_size == (512, 512)


@pytest.mark.parametrize("preset_name", PRESETS_UNDER_TEST)
def test_a_repvgg_fused_checkpoint_loads_and_matches_the_unfused_model(preset_name, folder_model, tmp_path):
    reference, want, images = folder_model(preset_name)
    fused = copy.deepcopy(reference)
    assert fuse_repvgg(fused) == 4 * reference.config.csp_blocks
    state = fused.state_dict()
    assert any(k.endswith("bottlenecks.0.conv.weight") for k in state)
    assert not any(k.endswith("bottlenecks.0.conv1.conv.weight") for k in state)

    loaded = load_model(save({"ema": {"module": state}}, tmp_path / "fused.pth"), image_size=images.shape[-1])
    blocks = [m for m in loaded.modules() if isinstance(m, RepVggBlock)]
    assert blocks and all(b.fused for b in blocks)
    result = compare_detectors(want, run_ours(loaded, images), SAME_WEIGHTS_TOL)
    print(f"{preset_name} fused: ordered {result.ordered_max_diff:.3g}, matched {result.matched_max_diff:.3g}")
    assert result.matched_max_diff <= SAME_WEIGHTS_TOL


@pytest.mark.slow
@pytest.mark.parametrize("stale", ["consistent", "corrupted"])
def test_a_deploy_checkpoint_with_the_fused_conv_and_stale_branches_uses_the_fused_conv(
        stale, folder_model, tmp_path):
    """The original ``convert_to_deploy`` adds ``conv`` but keeps ``conv1``/``conv2``; the fused conv wins."""
    reference, want, images = folder_model("r18vd")
    unfused_state = reference.state_dict()
    fused = copy.deepcopy(reference)
    fuse_repvgg(fused)
    state = dict(fused.state_dict())
    branches = {k: v for k, v in unfused_state.items() if ".bottlenecks." in k and (".conv1." in k or ".conv2." in k)}
    assert branches
    g = torch.Generator().manual_seed(5)
    for key, value in branches.items():
        state[key] = value if stale == "consistent" else value + torch.randn(value.shape, generator=g)
    loaded = load_model(save({"ema": {"module": state}}, tmp_path / "deploy.pth"))
    result = compare_detectors(want, run_ours(loaded, images), SAME_WEIGHTS_TOL)
    print(f"deploy ({stale} stale branches): matched {result.matched_max_diff:.3g}")
    assert result.matched_max_diff <= SAME_WEIGHTS_TOL


@pytest.fixture(scope="module")
def r50vd_m_checkpoint(tmp_path_factory):
    model = load_model(preset="r50vd_m", image_size=320, seed=3)
    path = tmp_path_factory.mktemp("r50vd_m") / "r50vd_m.pth"
    torch.save({"ema": {"module": model.state_dict()}}, path)
    return path


def _layers_run(model, images) -> tuple[list[int], list[int]]:
    ran, heads = [], []
    hooks = [layer.register_forward_hook(lambda m, i, o, n=n: ran.append(n))
             for n, layer in enumerate(model.decoder.decoder.layers)]
    hooks += [head.register_forward_hook(lambda m, i, o, n=n: heads.append(n))
              for n, head in enumerate(model.decoder.dec_score_head)]
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    return ran, heads


@pytest.mark.slow
@pytest.mark.parametrize("named", [True, False], ids=["explicit-preset", "inferred"])
def test_r50vd_m_outputs_from_decoder_layer_2_and_runs_only_three_layers(named, r50vd_m_checkpoint):
    model = load_model(r50vd_m_checkpoint, preset="r50vd_m" if named else None, image_size=320)
    assert model.config.decoder_layers == 6
    assert model.config.eval_layer == 2
    assert model.config.hidden_expansion == 0.5
    ran, heads = _layers_run(model, torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(0)))
    assert ran == [0, 1, 2]
    assert heads == [2]
