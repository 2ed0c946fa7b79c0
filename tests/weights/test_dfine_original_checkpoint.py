"""Checkpoints written by the original D-FINE and DEIM code load as our DFine (DEIM's RT-DETRv2 as our RTDETRv2) and
compute what their code computes.

The oracle is the upstream model itself (tests/upstream_dfine.py builds it from the vendored code in
tests/fixtures/upstream/ with the released configs' arguments), saved the way its solver saves
(``{'model', 'ema': {'module'}, 'date', 'last_epoch'}``) and loaded with ``rx.load_model(path)`` alone: the size, the
class count, the sampling points and FDR's constants come from the weights, D-FINE vs DEIM from the file name.
"""

from __future__ import annotations

import pytest
import torch

from conftest import DetectorOutputs, compare_detectors, make_images, run_ours
from onnx_parity import onnx_runtime_outputs
from rtdetr_export.model.dfine import DFine
from rtdetr_export.weights import load_model
from tiers import costly

PARITY_TOL = 1e-4  # the upstream code against ours, different code on the same weights
SAME_CODE_TOL = 1e-5  # our code against itself after a save and load
SIZE = 320


def original_layout(model: DFine) -> dict[str, torch.Tensor]:
    """Our weights under the original's key names (tested against the upstream state dict in the slow tests)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("backbone."):
            key = key.replace(".norm.", ".bn.")
        parts = key.split(".")
        if key.startswith("encoder.downsample_convs."):
            parts.insert(3, "0")
        out[".".join(parts)] = value
    points = model.config.decoder_n_points  # a buffer the original saves and ours derives
    for i in range(len(model.decoder.decoder.layers)):
        out[f"decoder.decoder.layers.{i}.cross_attn.num_points_scale"] = torch.tensor(
            [1 / n for n in points for _ in range(n)])
    out["decoder.decoder.up"] = out["decoder.up"]
    out["decoder.decoder.reg_scale"] = out["decoder.reg_scale"]
    return out


@pytest.fixture(scope="module")
def seeded_n():
    return load_model(preset="dfine_n", image_size=SIZE, num_classes=7)


def test_our_weights_in_the_original_layout_load_back_as_the_same_size_with_the_same_outputs(seeded_n, tmp_path):
    state = original_layout(seeded_n)
    assert "backbone.stem.stem1.bn.weight" in state and "encoder.downsample_convs.0.0.cv1.conv.weight" in state
    path = tmp_path / "dfine_n_custom.pth"
    torch.save({"ema": {"module": state, "updates": 3}, "last_epoch": 5}, path)
    loaded = load_model(path, image_size=SIZE)
    assert isinstance(loaded, DFine) and loaded.source.format == "original"
    assert loaded.config.model_name == "D-FINE-N" and loaded.config.num_classes == 7
    images = make_images(SIZE)
    result = compare_detectors(run_ours(seeded_n, images), run_ours(loaded, images), SAME_CODE_TOL)
    assert result.matched_max_diff == 0.0


def test_a_deim_file_name_gives_deims_activations_and_a_preset_overrides_it(seeded_n, tmp_path):
    path = tmp_path / "deim_hgnetv2_n_coco.pth"
    torch.save({"model": original_layout(seeded_n)}, path)
    deim = load_model(path, image_size=SIZE)
    assert deim.config.model_name == "DEIM-D-FINE-N"
    assert (deim.config.decoder_activation, deim.config.mlp_activation) == ("silu", "silu")
    told = load_model(path, preset="dfine_n", image_size=SIZE)
    assert told.config.model_name == "D-FINE-N" and told.config.mlp_activation == "relu"
    images = make_images(SIZE)
    assert (deim(images)[0] - told(images)[0]).abs().max() > 1e-3  # the activations do change the outputs


def test_a_deploy_converted_or_incomplete_checkpoint_is_one_line_and_writes_nothing(seeded_n, tmp_path):
    from click.testing import CliRunner

    from rtdetr_export.cli import main

    state = original_layout(seeded_n)
    deployed = {k.replace("cv1.conv.", "cv1.conv_bn_fused."): v for k, v in state.items()}
    incomplete = {k: v for k, v in state.items() if not k.startswith("decoder.enc_output.")}
    for name, weights, words in (("deployed.pth", deployed, "deploy()"), ("incomplete.pth", incomplete,
                                                                            "decoder.enc_output.proj.weight")):
        torch.save({"model": weights}, tmp_path / name)
        out = tmp_path / f"{name}.onnx"
        result = CliRunner().invoke(main, ["onnx", "--model", str(tmp_path / name), "-o", str(out)])
        assert result.exit_code != 0 and words in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and not out.exists()


# -- against the original code ----------------------------------------------------------------------------------
CASES = [("dfine", "S"), ("deim", "S"), ("dfine", "N"), ("deim", "N")]


@pytest.fixture(scope="module")
@costly
def upstream(tmp_path_factory):
    """``upstream(kind, size, method)``: (the original model, the path of its solver checkpoint)."""
    from upstream_dfine import build_upstream, solver_checkpoint

    cache = {}

    def get(kind: str, size: str, method: str = "default"):
        if (kind, size, method) not in cache:
            model = build_upstream(size, SIZE, deim=kind == "deim", method=method)
            path = tmp_path_factory.mktemp("upstream") / f"{kind}_hgnetv2_{size.lower()}_coco.pth"
            torch.save(solver_checkpoint(model), path)
            cache[kind, size, method] = model, path
        return cache[kind, size, method]
    return get


@pytest.mark.parametrize("kind, size", CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_a_checkpoint_written_by_the_original_code_loads_as_its_size_and_matches_it(kind, size, upstream):
    from upstream_dfine import run_upstream

    model, path = upstream(kind, size)
    loaded = load_model(path)
    assert loaded.config.model_name == f"{'DEIM-' if kind == 'deim' else ''}D-FINE-{size}"
    assert loaded.config.image_size == (SIZE, SIZE)  # from the anchors the original saves
    images = make_images(SIZE)
    want, got = run_upstream(model, images), run_ours(loaded, images)
    result = compare_detectors(want, got, PARITY_TOL)
    print(f"{kind}-{size}: ordered {result.ordered_max_diff:.3g}, matched {result.matched_max_diff:.3g}")
    assert result.matched_max_diff <= PARITY_TOL
    # The upstream model is a well-conditioned oracle: peaked distributions, distinct queries.
    assert want.boxes.std() > 0.05 and (want.logits[0] - want.logits[1]).abs().max() > 0.1


@pytest.mark.parametrize("kind", ["dfine", "deim"])
def test_the_discrete_sampler_matches_the_original_discrete_method(kind, upstream):
    from upstream_dfine import run_upstream

    model, path = upstream(kind, "N", "discrete")
    loaded = load_model(path, method="discrete")
    images = make_images(SIZE)
    result = compare_detectors(run_upstream(model, images), run_ours(loaded, images), PARITY_TOL)
    assert result.matched_max_diff <= PARITY_TOL


# Measured: ONNX Runtime 5.3e-5 (D-FINE-S), 5.6e-5 (DEIM-D-FINE-S), 5.2e-5 / 5.8e-5 at N (batch 2, 320 px, gather
# bilinear), against 3e-6 to 4e-6 for our PyTorch model: the export's BatchNorm folding rounds differently.
@pytest.mark.parametrize("kind, size", [("dfine", "S"), ("deim", "S")], ids=["dfine-S", "deim-S"])
def test_onnx_runtime_of_our_export_matches_the_original_pytorch_model(kind, size, upstream):
    from upstream_dfine import run_upstream

    model, path = upstream(kind, size)
    loaded = load_model(path)
    images = make_images(SIZE)
    logits, boxes = onnx_runtime_outputs(loaded, images)
    reference = run_ours(loaded, images)  # only its encoder scores are read, for the tie check
    got = DetectorOutputs(logits, boxes, reference.topk_scores, reference.all_scores)
    result = compare_detectors(run_upstream(model, images), got, PARITY_TOL)
    print(f"ONNX {kind}-{size}: ordered {result.ordered_max_diff:.3g}, matched {result.matched_max_diff:.3g}")
    assert result.matched_max_diff <= PARITY_TOL and torch.isfinite(logits).all()


def test_the_upstream_state_dict_is_the_original_layout_of_ours(upstream):
    """The key map the fast tests use (original_layout) is the upstream model's own layout."""
    model, _ = upstream("dfine", "S")
    ours = load_model(preset="dfine_s", image_size=SIZE)
    derived = ("anchors", "valid_mask")
    theirs = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith(derived)}
    assert {k: tuple(v.shape) for k, v in original_layout(ours).items()} == theirs


def test_describe_names_a_checkpoints_family_and_size(seeded_n, tmp_path):
    from click.testing import CliRunner

    from rtdetr_export.cli import main

    path = tmp_path / "dfine_n_coco.pth"
    torch.save({"ema": {"module": original_layout(seeded_n)}}, path)
    result = CliRunner().invoke(main, ["describe", "--model", str(path), "--image-size", str(SIZE)])
    assert result.exit_code == 0, result.output
    assert "D-FINE-N" in result.output and "HGNetv2" in result.output and "original" in result.output


# -- DEIM's RT-DETRv2 ----------------------------------------------------------------------------------------------
def test_a_three_layer_query_position_head_loads_as_deim_rt_detrv2_with_silu_heads(tmp_path):
    model = load_model(preset="tiny", query_pos_layers=3, mlp_activation="silu", decoder_activation="silu")
    assert model.decoder.query_pos_head.layers[0].weight.shape == (64, 4)  # as_reg: d_model wide, not 2 * d_model
    path = tmp_path / "last.pth"  # no "deim" in the name: the head itself says DEIM
    torch.save({"ema": {"module": model.state_dict()}}, path)
    loaded = load_model(path, image_size=model.config.image_size)
    assert loaded.config.model_name == "DEIM-RT-DETRv2"
    assert (loaded.config.mlp_activation, loaded.config.decoder_activation) == ("silu", "silu")
    images = make_images(*model.config.image_size)
    assert compare_detectors(run_ours(model, images), run_ours(loaded, images), SAME_CODE_TOL).matched_max_diff == 0


@pytest.mark.slow  # the original r18vd model built and run at 320 px (~15 s)
def test_a_deim_rt_detrv2_checkpoint_written_by_the_original_code_matches_it(tmp_path):
    from upstream_dfine import build_upstream_deim_rtdetrv2, run_upstream, solver_checkpoint

    model = build_upstream_deim_rtdetrv2(SIZE)
    path = tmp_path / "deim_rtdetrv2_r18vd_120e_coco.pth"
    torch.save(solver_checkpoint(model), path)
    loaded = load_model(path)
    assert loaded.config.model_name == "DEIM-RT-DETRv2" and loaded.config.backbone_blocks == (2, 2, 2, 2)
    images = make_images(SIZE)
    result = compare_detectors(run_upstream(model, images), run_ours(loaded, images), PARITY_TOL)
    print(f"DEIM-RT-DETRv2 r18vd: ordered {result.ordered_max_diff:.3g}, matched {result.matched_max_diff:.3g}")
    assert result.matched_max_diff <= PARITY_TOL

